"""The browser's submission form; the checks that matter are the service's (runs/validation.py)."""

from __future__ import annotations

from django import forms
from django.conf import settings

from evaluations.accounts.quotas import RunCeilings, run_ceilings
from evaluations.runs.uploads import argv_from_text
from evaluations.runs.validation import MIN_MEMORY_MB, MIN_WALL_SECONDS


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
    preload = forms.BooleanField(
        required=False,
        label="Preload common modules",
        help_text="start in a Python that has imported numpy, json, csv… already: faster, more memory",
    )

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
        # The range for spinners and assistive technology; the form is novalidate, so what is out of
        # range comes back from the server in the page's one error summary.
        self.fields["wall_seconds"].widget.attrs.update(min=f"{MIN_WALL_SECONDS:g}", max=f"{max_wall:g}", step="any")
        self.fields["memory_mb"].widget.attrs.update(min=str(MIN_MEMORY_MB), max=str(max_mb), step="1")

    def clean_stdin(self) -> str:
        # Browsers send a textarea's line breaks as CRLF; the program gets the lines the user typed.
        # (The API's stdin is taken byte for byte.)
        return self.cleaned_data.get("stdin", "").replace("\r\n", "\n")

    def clean_argv(self) -> list[str]:
        try:
            return argv_from_text(self.cleaned_data.get("argv"))
        except forms.ValidationError as exc:
            # Its error is keyed by field, which a clean_<field> may not raise (a TypeError, a 500).
            raise forms.ValidationError(exc.message_dict["argv"]) from None

    def clean(self):
        data = super().clean()
        if data.get("code", "").strip() and data.get("file"):
            raise forms.ValidationError("Paste code or upload a file, not both.")
        if not (data.get("name") or "").strip() and data.get("file"):
            data["name"] = data["file"].name[:200]  # an upload is named after its file
        return data

    def error_summary(self) -> list[tuple[str, str, str]]:
        """(field id or "", label, message) for each error, in the form's order, for the summary
        at the top of the page; a form-wide error links to the form itself."""
        rows = [("", "", message) for message in self.non_field_errors()]
        for field in self:
            rows += [(field.id_for_label, field.label, message) for message in field.errors]
        return rows
