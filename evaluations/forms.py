from __future__ import annotations

from django import forms
from django.conf import settings


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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["wall_seconds"].widget.attrs["placeholder"] = f"{settings.CRUCIBLE_DEFAULT_WALL_SECONDS:g}"
        self.fields["wall_seconds"].help_text = f"at most {settings.CRUCIBLE_MAX_WALL_SECONDS:g} s"
        self.fields["memory_mb"].widget.attrs["placeholder"] = str(settings.CRUCIBLE_DEFAULT_MEMORY_MB)
        self.fields["memory_mb"].help_text = f"at most {settings.CRUCIBLE_MAX_MEMORY_MB} MiB"

    def clean(self):
        data = super().clean()
        if data.get("code", "").strip() and data.get("file"):
            raise forms.ValidationError("Paste code or upload a file, not both.")
        return data
