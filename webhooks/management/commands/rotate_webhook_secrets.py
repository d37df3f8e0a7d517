from django.core.management.base import BaseCommand

from webhooks import endpoints


class Command(BaseCommand):
    help = "Re-encrypt every webhook signing secret under the first key of OPTIO_SECRET_KEYS."

    def handle(self, **options):
        count = endpoints.reencrypt_secrets()
        self.stdout.write(f"Re-encrypted the secrets of {count} webhook(s) under the newest key.")
