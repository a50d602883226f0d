"""Who may see and change what.

Project members (the owner included) see and change everything in their project; only the
owner manages members. A visitor who opened a valid share link sees the one object the link
names, read-only. Every page, API view and websocket consumer asks these functions.
"""

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

from biovlm_web.core.models import Membership, Project, ShareLink

SESSION_SHARE_TOKENS = "share_tokens"
# A visitor's session remembers at most this many share tokens.
MAX_SESSION_SHARE_TOKENS = 50


def projects_for(user):
    if not user or not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user).distinct()


def is_member(user, project) -> bool:
    if not user or not user.is_authenticated or project is None:
        return False
    return Membership.objects.filter(project=project, user=user).exists()


def is_owner(user, project) -> bool:
    if not user or not user.is_authenticated or project is None:
        return False
    return project.owner_id == user.pk


def remember_share_token(session, token: str) -> None:
    tokens = [t for t in session.get(SESSION_SHARE_TOKENS, []) if t != token]
    tokens.append(token)
    session[SESSION_SHARE_TOKENS] = tokens[-MAX_SESSION_SHARE_TOKENS:]


SHARE_TOKEN_HEADER = "HTTP_X_SHARE_TOKEN"


def share_tokens(session, headers=None) -> list[str]:
    """Share tokens a visitor presents: those opened in this session and an X-Share-Token header."""
    tokens = list(session.get(SESSION_SHARE_TOKENS) or []) if session is not None else []
    if headers is not None and headers.get(SHARE_TOKEN_HEADER):
        tokens.append(headers[SHARE_TOKEN_HEADER].strip())
    return tokens


def share_link_for(session, obj, headers=None) -> ShareLink | None:
    """Return a valid share link presented by the visitor that opens ``obj``, if any."""
    tokens = share_tokens(session, headers)
    if not tokens:
        return None
    content_type = ContentType.objects.get_for_model(obj)
    links = ShareLink.objects.filter(content_type=content_type, object_id=obj.pk).with_tokens(tokens)
    for link in links:
        if link.is_valid:
            return link
    return None


def can_view(user, session, obj, headers=None) -> bool:
    """Return whether ``user`` (with ``session``) may read ``obj``, an object with a ``project``.

    An object without a project (a platform job such as a model check) is readable by every
    signed-in user and by no share link.
    """
    if obj.project is None:
        return bool(user and user.is_authenticated)
    if is_member(user, obj.project):
        return True
    return share_link_for(session, obj, headers) is not None


def request_can_view(request, obj) -> bool:
    return can_view(request.user, getattr(request, "session", None), obj, request.META)


def can_change(user, obj) -> bool:
    return is_member(user, obj.project)


def member_filter(user, prefix: str = "project") -> Q:
    """Return a filter for querysets of objects whose project has ``user`` as a member."""
    return Q(**{f"{prefix}__memberships__user": user})
