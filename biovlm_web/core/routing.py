from django.urls import path

from biovlm_web.core.consumers import JobProgressConsumer

websocket_urlpatterns = [
    path("ws/jobs/<uuid:job_uuid>/", JobProgressConsumer.as_asgi()),
]
