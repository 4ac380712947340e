"""Teams in the admin: members leave a team (each change audited) before it is deleted."""

from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.db.models import Count

from evaluations.accounts import services
from evaluations.models import Profile, Team


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "member_count", "created")
    search_fields = ("name",)
    readonly_fields = ("members_list", "created")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("members"))

    @admin.display(description="members", ordering="_members")
    def member_count(self, team) -> int:
        return team._members

    @admin.display(description="members")
    def members_list(self, team) -> str:
        names = sorted(team.members.values_list("user__username", flat=True)) if team.pk else []
        return ", ".join(names) or "— (set a user's team on their page)"

    def delete_model(self, request, obj) -> None:
        self.delete_queryset(request, Team.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        # Members leave the team first, each audited, before it goes.
        with transaction.atomic():
            for profile in Profile.objects.filter(team__in=queryset).select_related("user"):
                services.user_set_team(actor=request.user, user=profile.user, team=None, request=request)
            queryset.delete()
