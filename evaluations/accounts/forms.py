"""Account forms outside the admin: sign-up and naming a new API token."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from evaluations.accounts import tokens


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=True, help_text="Where an admin can reach you.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=tokens.NAME_MAX_CHARS,
        widget=forms.TextInput(attrs={"placeholder": "e.g. laptop script, CI"}),
        help_text="What will use it, so you know which one to revoke later.",
    )
