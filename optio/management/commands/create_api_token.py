from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from optio.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user and print it (it is shown only this once; only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="created with manage.py", help="A label to tell tokens apart")
        parser.add_argument("--expires-in-days", type=int, default=None, help="Default: never expires")

    def handle(self, username, name, expires_in_days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}; create one with: python manage.py createsuperuser")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; a token for it would be refused.")
        expires_at = None
        if expires_in_days is not None:
            if expires_in_days < 1:
                raise CommandError("--expires-in-days must be at least 1.")
            expires_at = timezone.now() + timedelta(days=expires_in_days)
        _, raw = ApiToken.objects.issue(user, name=name, expires_at=expires_at)
        self.stdout.write(raw)
