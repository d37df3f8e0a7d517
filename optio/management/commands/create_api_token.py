from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from optio.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="created with manage.py")

    def handle(self, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}; create one with: python manage.py createsuperuser")
        _, raw = ApiToken.objects.issue(user, name=name)
        self.stdout.write(raw)
