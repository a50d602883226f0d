"""Every URL pattern of the project, read from the resolver, and the request that visits each one.

``routes()`` walks ``ROOT_URLCONF`` and returns one ``Route`` per URL name, with the HTTP
methods its view answers where the view declares them (DRF viewsets and API views). ``path_for``
fills a route's path parameters from the world that ``tests.security.world`` stores.
"""

from dataclasses import dataclass, field

from django.urls import URLPattern, URLResolver, get_resolver, reverse

# Namespaces whose every view is wrapped by the admin site's or django-rq's staff check.
STAFF_NAMESPACES = ("admin", "django_rq")


@dataclass
class Route:
    name: str
    patterns: list[str] = field(default_factory=list)
    methods: set[str] | None = None
    parameters: set[str] = field(default_factory=set)


def _view_methods(callback) -> set[str] | None:
    actions = getattr(callback, "actions", None)
    if actions:
        return {method.upper() for method in actions}
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is not None:
        handlers = {"get", "post", "put", "patch", "delete"}
        return {method.upper() for method in handlers if hasattr(view_class, method)}
    return None


def _walk(resolver, prefix="", namespace=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), namespace + (entry.name or ""), entry


def routes() -> dict[str, Route]:
    """Return the project's routes by URL name; a pattern without a name gets its pattern as name."""
    found: dict[str, Route] = {}
    for pattern, name, entry in _walk(get_resolver()):
        route = found.setdefault(name or pattern, Route(name or pattern))
        route.patterns.append(pattern)
        # A format suffix (".json") is not a path parameter that names an object.
        route.parameters |= set(entry.pattern.regex.groupindex) - {"format"}
        methods = _view_methods(entry.callback)
        if methods is not None:
            route.methods = (route.methods or set()) | methods
    return found


def is_staff_only(name: str) -> bool:
    return name.split(":", 1)[0] in STAFF_NAMESPACES and ":" in name


# Which stored object a route's <uuid> names, by the start of its URL name; the first match wins.
UUID_OBJECTS = [
    ("api-project", "project"),
    ("project-", "project"),
    ("api-job", "job"),
    ("job-", "job"),
    ("api-share-link", "share_links.job"),
    ("share-revoke", "scratch_link"),
    ("share-create", "job"),
    ("api-dataset", "dataset"),
    ("dataset-create", "project"),
    ("dataset-", "dataset"),
    ("api-file", "data_file"),
    ("api-upload", "upload"),
    ("api-tomogram-runs", "tomogram"),
    ("api-tomogram-run", "tomogram_run"),
    ("tomogram-run-detail", "tomogram_run"),
    ("tomogram-list", "project"),
    ("tomogram-upload", "project"),
    ("tomogram-register", "project"),
    ("api-tomogram", "tomogram"),
    ("tomogram-", "tomogram"),
    ("comparison-create", "project"),
    ("api-comparison", "comparison"),
    ("comparison-", "comparison"),
    ("api-hypothesis", "hypothesis"),
    ("anomaly-scene-create", "project"),
    ("api-scene", "scene"),
    ("anomaly-scene-", "scene"),
    ("api-video-run", "video_run"),
    ("anomaly-run-", "video_run"),
    ("api-segment", "segment"),
    ("api-verdict", "verdict"),
]
# Objects that a DELETE removes; the matrix deletes scratch copies instead of the shared ones.
SCRATCH = {
    "data_file": "scratch_file",
    "upload": "scratch_upload",
    "comparison": "scratch_comparison",
    "scene": "scratch_scene",
    "video_run": "scratch_video_run",
}
# A job that has finished, so that a retry is allowed.
RETRY_ROUTES = {"api-job-retry", "job-retry"}
EXPORT_FORMATS = {"api-tomogram-run-export": "csv", "anomaly-run-export": "json", "comparison-export": "csv"}


def _lookup(world, key: str):
    value = world
    for part in key.split("."):
        value = value[part]
    return value


def _uuid_of(value) -> str:
    return str(getattr(value, "uuid", value))


def path_kwargs(route: Route, method: str, world: dict) -> dict:
    """Return values for the route's path parameters that name objects of ``world``."""
    kwargs = {}
    for parameter in route.parameters:
        if parameter == "uuid":
            key = next((key for prefix, key in UUID_OBJECTS if route.name.startswith(prefix)), None)
            if key is None:
                raise LookupError(f"No stored object for <uuid> of route {route.name!r}; add it to UUID_OBJECTS.")
            if route.name in RETRY_ROUTES:
                key = "finished_job"
            if method == "DELETE":
                key = SCRATCH.get(key, key)
            kwargs["uuid"] = _uuid_of(_lookup(world, key))
        elif parameter == "image_uuid":
            key = "scratch_comparison_image" if method == "DELETE" else "comparison_image"
            kwargs["image_uuid"] = _uuid_of(world[key])
        elif parameter == "username":
            kwargs["username"] = "member"
        elif parameter == "tool":
            kwargs["tool"] = "neighbors"
        elif parameter == "z":
            kwargs["z"] = "1"
        elif parameter == "particle_id":
            kwargs["particle_id"] = "0"
        elif parameter == "export_format":
            kwargs["export_format"] = EXPORT_FORMATS[route.name]
        elif parameter == "variant":
            kwargs["variant"] = "thumbnail"
        elif parameter == "token":
            kwargs["token"] = world["share_links"]["job"].token
        elif parameter == "target_type":
            kwargs["target_type"] = "job"
        else:
            raise LookupError(f"No value for path parameter {parameter!r} of route {route.name!r}.")
    return kwargs


def path_for(route: Route, method: str, world: dict) -> str:
    if not route.parameters and route.name == route.patterns[0]:
        # An unnamed pattern, such as favicon.ico, is its own path.
        return "/" + route.patterns[0]
    return reverse(route.name, kwargs=path_kwargs(route, method, world))


def request_body(route: Route, method: str, world: dict) -> dict:
    """Return a body for a write request that names the world's objects, so that permission checks on them run.

    Each view reads the fields it declares and ignores the rest.
    """
    if method in ("GET", "HEAD", "DELETE") or not route.name.startswith("api-"):
        return {}
    return {
        "project": str(world["project"].uuid),
        "dataset": str(world["dataset"].uuid),
        "name": "Written by the permission matrix",
        "description": "Written by the permission matrix",
        "filename": "matrix.png",
        "size": 10,
        "kind": "test_steps",
        "params": {"steps": 1},
        "target_type": "job",
        "target_uuid": str(world["job"].uuid),
        "normal_videos": [str(world["video"].uuid)],
        "videos": [str(world["video"].uuid)],
        "username": "stranger",
        "decision": "confirm",
        "question": "How many ribosomes are there?",
        "point": [100.0, 100.0, 100.0],
        "radius": 50.0,
    }
