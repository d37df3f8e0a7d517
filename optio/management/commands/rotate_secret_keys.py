from django.core.management.base import BaseCommand
from django.db import transaction

from optio import secrets


class Command(BaseCommand):
    help = "Re-encrypt every stored secret under the first key of OPTIO_SECRET_KEYS."

    def handle(self, **options):
        with transaction.atomic():
            count = secrets.rotate_all()
        self.stdout.write(f"Re-encrypted {count} secret(s) under the newest key.")
