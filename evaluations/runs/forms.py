"""The browser's submission form; the checks that matter are the service's (runs/validation.py)."""

from __future__ import annotations

from django import forms
from django.conf import settings

from evaluations.accounts.quotas import RunCeilings, run_ceilings
from evaluations.runs.uploads import argv_from_text


class SubmissionForm(forms.Form):
    name = forms.CharField(required=False, max_length=200, widget=forms.TextInput(attrs={"placeholder": "untitled"}))
    code = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 18,
                "spellcheck": "false",
                "class": "code-editor",
                "placeholder": "print('hello from the sandbox')",
            }
        ),
    )
    file = forms.FileField(
        required=False,
        help_text="or upload a .py file, or a project as .zip / .tar.gz with its entry point",
        widget=forms.ClearableFileInput(attrs={"accept": ".py,.zip,.tar.gz,.tgz,.tar"}),
    )
    entrypoint = forms.CharField(
        required=False, max_length=255, label="Entry point", widget=forms.TextInput(attrs={"placeholder": "main.py"})
    )
    argv = forms.CharField(
        required=False,
        label="Arguments",
        widget=forms.TextInput(attrs={"placeholder": '--epochs 3 "two words"'}),
        help_text="split like a shell would",
    )
    stdin = forms.CharField(
        required=False, strip=False, label="Standard input", widget=forms.Textarea(attrs={"rows": 3})
    )
    wall_seconds = forms.FloatField(required=False, label="Wall-time limit (s)")
    memory_mb = forms.IntegerField(required=False, label="Memory limit (MiB)")

    def __init__(self, *args, ceilings: RunCeilings | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The help texts give the user's own maxima: the site's, or their quota's where lower.
        ceilings = ceilings or run_ceilings(None)
        max_wall, max_mb = ceilings.wall_seconds.value, ceilings.memory_mb.value
        default_wall = min(settings.CRUCIBLE_DEFAULT_WALL_SECONDS, max_wall)
        self.fields["wall_seconds"].widget.attrs["placeholder"] = f"{default_wall:g}"
        self.fields["wall_seconds"].help_text = f"at most {max_wall:g} s"
        self.fields["memory_mb"].widget.attrs["placeholder"] = str(min(settings.CRUCIBLE_DEFAULT_MEMORY_MB, max_mb))
        self.fields["memory_mb"].help_text = f"at most {max_mb} MiB"

    def clean_argv(self) -> list[str]:
        return argv_from_text(self.cleaned_data.get("argv"))

    def clean(self):
        data = super().clean()
        if data.get("code", "").strip() and data.get("file"):
            raise forms.ValidationError("Paste code or upload a file, not both.")
        return data
