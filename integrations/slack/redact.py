"""Keep Slack webhook URLs out of log lines.

The token of an incoming webhook is its path (`/services/T…/B…/<secret>`). urllib3 logs
the request line of every request at DEBUG level; this filter masks such paths in it.
"""

from __future__ import annotations

import logging
import re

_HOOK_PATH = re.compile(r"(/services/[^/\s\"']{0,2})[^/\s\"']*(?:/[^\s\"']*)?")


def redact(text: str) -> str:
    return _HOOK_PATH.sub(r"\1…/…", text)


class RedactWebhookPaths(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/services/" in message:
            record.msg, record.args = redact(message), ()
        return True


def install_log_redaction() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactWebhookPaths) for f in logger.filters):
        logger.addFilter(RedactWebhookPaths())
