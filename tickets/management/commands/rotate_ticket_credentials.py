from django.core.management.base import BaseCommand
from django.db import transaction

from optio import crypto
from tickets.models import TicketProvider


class Command(BaseCommand):
    help = (
        "Re-encrypt every ticket provider's stored credentials under the first key of OPTIO_SECRET_KEYS "
        "(run it with rotate_secret_keys, before removing an old key)."
    )

    def handle(self, **options):
        count = 0
        with transaction.atomic():
            for provider in TicketProvider.objects.select_for_update().exclude(credentials_encrypted=""):
                provider.credentials_encrypted = crypto.rotate(provider.credentials_encrypted)
                provider.save(update_fields=["credentials_encrypted"])
                count += 1
        self.stdout.write(f"Re-encrypted the credentials of {count} ticket provider(s) under the newest key.")
