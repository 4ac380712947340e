"""The browser's batch form; the checks that matter are the service's and evaluations/batches/inputs.py."""

from __future__ import annotations

from django import forms

from evaluations.runs.uploads import argv_from_text


class BatchForm(forms.Form):
    name = forms.CharField(required=False, max_length=200, widget=forms.TextInput(attrs={"placeholder": "untitled"}))
    code = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code-editor"}),
    )
    file = forms.FileField(
        required=False,
        help_text="or upload a .py file, or a project as .zip / .tar.gz with its entry point",
        widget=forms.ClearableFileInput(attrs={"accept": ".py,.zip,.tar.gz,.tgz,.tar"}),
    )
    entrypoint = forms.CharField(
        required=False, max_length=255, label="Entry point", widget=forms.TextInput(attrs={"placeholder": "main.py"})
    )
    argv = forms.CharField(required=False, label="Arguments for every run", help_text="split like a shell would")
    inputs_file = forms.FileField(
        required=False,
        label="Inputs (.csv or .json)",
        help_text="one run per row and configuration; columns (or keys): label, stdin, stdin_file, argv",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.json"}),
    )
    configs_file = forms.FileField(
        required=False,
        label="Configurations (.csv or .json)",
        help_text="columns (or keys): label, wall_seconds, memory_mb; none: one with the defaults",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.json"}),
    )

    callback_url = forms.CharField(
        required=False,
        max_length=2000,
        label="Callback URL",
        help_text="told as each run ends (signed with your webhook secret); empty: your profile's",
    )

    def clean_argv(self) -> list[str]:
        try:
            return argv_from_text(self.cleaned_data.get("argv"))
        except forms.ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["argv"]) from None
