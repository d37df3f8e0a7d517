import secrets as pysecrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from optio.models import ApiToken


class Command(BaseCommand):
    help = "On first run: create the admin user and an API token, and print both once."

    def handle(self, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = pysecrets.token_urlsafe(12)
        user = User.objects.create_superuser("admin", "", password)
        _, token = ApiToken.objects.issue(user, name="first run")
        self.stdout.write(
            "\n"
            "  Optio is set up. These are shown once; keep them somewhere safe.\n"
            f"    Dashboard login:  admin / {password}\n"
            f"    API token:        {token}\n"
            "    Try:  curl -H 'Authorization: Bearer <token>' http://127.0.0.1:8000/api/tasks\n"
        )
