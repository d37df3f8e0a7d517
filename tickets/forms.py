"""The Settings form for a ticket provider, built from its source's `form_fields`."""

from __future__ import annotations

from django import forms

from tickets.models import TicketProvider
from tickets.providers.base import ConfigError, TicketSource


def build_form(source: TicketSource, data=None, provider: TicketProvider | None = None) -> forms.Form:
    """A form with one input per field of `source`; `provider` fills it in for editing."""
    stored = provider.credential_names if provider is not None else []
    form = forms.Form(data=data, prefix=None)
    form.source = source
    for spec in source.form_fields:
        attrs = {"placeholder": spec.placeholder} if spec.placeholder else {}
        help_text = spec.help
        if spec.kind == "secret":
            if spec.key in stored:
                help_text = "Stored (never shown). Leave empty to keep it. " + spec.help
                attrs["placeholder"] = "•••••••• stored"
            field = forms.CharField(
                label=spec.label,
                required=spec.required and spec.key not in stored,
                widget=forms.PasswordInput(attrs=attrs | {"autocomplete": "new-password"}),
                help_text=help_text,
            )
        elif spec.kind == "lines":
            field = forms.CharField(
                label=spec.label,
                required=spec.required,
                widget=forms.Textarea(attrs=attrs | {"rows": 3}),
                help_text=help_text,
            )
        else:
            field = forms.CharField(
                label=spec.label, required=spec.required, widget=forms.TextInput(attrs=attrs), help_text=help_text
            )
        form.fields[spec.key] = field
        if provider is not None and spec.kind != "secret":
            value = provider.config.get(spec.key)
            if isinstance(value, list):
                value = ("\n" if spec.kind == "lines" else ", ").join(value)
            form.initial[spec.key] = value or ""
    form.fields["enabled"] = forms.BooleanField(label="Enabled", required=False)
    form.initial["enabled"] = provider.enabled if provider is not None else True
    if provider is not None:
        for spec in source.form_fields:
            if spec.kind == "secret" and not spec.required and spec.key in stored:
                form.fields[f"clear_{spec.key}"] = forms.BooleanField(
                    label=f"Remove the stored {spec.label}", required=False
                )
    return form


def config_from(form: forms.Form) -> dict:
    """The config a valid form describes; empty fields are sent as null (removed), empty secrets are left out (kept)."""
    config: dict = {}
    for spec in form.source.form_fields:
        value = (form.cleaned_data.get(spec.key) or "").strip()
        if spec.kind == "secret":
            if form.cleaned_data.get(f"clear_{spec.key}"):
                config[spec.key] = None
            elif value:
                config[spec.key] = value
        elif spec.kind == "lines":
            config[spec.key] = [line.strip() for line in value.splitlines() if line.strip()] or None
        elif spec.kind == "csv":
            config[spec.key] = [part.strip() for part in value.split(",") if part.strip()] or None
        else:
            config[spec.key] = value or None
    return config


def add_config_error(form: forms.Form, exc: ConfigError) -> None:
    placed = False
    for key, messages in (exc.details or {}).items():
        if key in form.fields:
            form.add_error(key, messages if isinstance(messages, list) else [str(messages)])
            placed = True
    if not placed:
        form.add_error(None, str(exc))
