import secrets as pysecrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from optio.models import ApiToken


class Command(BaseCommand):
    help = "On first run: create an admin user and an API token, and print both once. Later runs print nothing."

    def add_arguments(self, parser):
        parser.add_argument("--url", help="Where Optio will answer, for the example command (default OPTIO_PUBLIC_URL)")

    def handle(self, url=None, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = "admin"
        if User.objects.filter(username=username).exists():  # someone made a plain user called admin
            username = "optio-admin"
        password = pysecrets.token_urlsafe(12)
        user = User.objects.create_superuser(username, "", password)
        _, token = ApiToken.objects.issue(user, name="first run")
        base = (url or settings.OPTIO_PUBLIC_URL).rstrip("/")
        self.stdout.write(
            "\n"
            "  Optio is set up. These are shown only this once; keep them somewhere safe.\n"
            f"    Dashboard:  {base}/  sign in as {username} / {password}\n"
            f"    API token:  {token}\n"
            f"    Try:        curl -H 'Authorization: Bearer {token}' {base}/api/tasks\n"
        )
