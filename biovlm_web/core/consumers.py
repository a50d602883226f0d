"""The websocket that streams one job's progress: ``ws/jobs/<uuid>/``."""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

from biovlm_web.core.access import can_view
from biovlm_web.core.models import Job
from biovlm_web.core.progress import job_group

logger = logging.getLogger(__name__)

# Close code sent when the visitor may not watch the job (4000-4999 are free for applications).
CLOSE_FORBIDDEN = 4403


class JobProgressConsumer(AsyncJsonWebsocketConsumer):
    """Sends the job's state right after connecting, then every update.

    It also re-reads the row every ``poll_seconds``: that re-checks access (a revoked
    share link closes the socket), runs the stale-job reaper, and sends the state if an
    update was missed.
    """

    poll_seconds = 10.0
    # Poll interval while the channel layer (Redis) is unavailable, so polling alone carries progress.
    poll_seconds_without_layer = 2.0

    # Channels' consumer sets ``channel_receive`` to the layer's receive for its channel and
    # stops the whole socket when that raises. The property wraps it so that a Redis outage
    # only pauses pushed updates, and polling carries the progress meanwhile.
    @property
    def channel_receive(self):
        return self._receive_from_layer

    @channel_receive.setter
    def channel_receive(self, receive):
        self._layer_receive = receive

    async def _receive_from_layer(self):
        failures = 0
        while True:
            try:
                return await self._layer_receive()
            except (RedisError, OSError) as error:
                failures += 1
                if failures == 1:
                    logger.warning("Receiving updates of job %s failed, retrying: %s", self.job_uuid, error)
                # A restarted Redis has lost the group membership, so the poller joins again.
                self._grouped = False
                await asyncio.sleep(self.poll_seconds_without_layer)

    async def connect(self):
        self.job_uuid = str(self.scope["url_route"]["kwargs"]["job_uuid"])
        self.group = job_group(self.job_uuid)
        self._poller = None
        self._grouped = False
        snapshot = await self._allowed_snapshot()
        # Accept before closing: a close before accept rejects the handshake, and the
        # browser would see code 1006, the same as a network failure, and keep retrying.
        await self.accept()
        if snapshot is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self._join_group()
        self._last_sent = snapshot
        await self.send_json({"type": "snapshot", "job": snapshot})
        if snapshot["status"] not in Job.FINISHED:
            self._poller = asyncio.create_task(self._poll())

    async def disconnect(self, code):
        if getattr(self, "_poller", None) is not None:
            self._poller.cancel()
        if not getattr(self, "_grouped", False):
            return
        try:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        except Exception as error:  # channels_redis raises redis-py's errors when Redis is unavailable
            logger.warning("Leaving the progress group of job %s failed: %s", self.job_uuid, error)

    async def _join_group(self) -> None:
        """Join the job's group; without Redis, log it and let polling send the updates."""
        try:
            await self.channel_layer.group_add(self.group, self.channel_name)
        except Exception as error:  # channels_redis raises redis-py's errors when Redis is unavailable
            logger.warning(
                "Joining the progress group of job %s failed, so its socket polls every %.0f s: %s",
                self.job_uuid,
                self.poll_seconds_without_layer,
                error,
            )
            return
        self._grouped = True

    async def receive_json(self, content, **kwargs):
        # The client may ask for the current state at any time.
        if content.get("type") == "refresh":
            snapshot = await self._allowed_snapshot()
            if snapshot is None:
                await self.close(code=CLOSE_FORBIDDEN)
                return
            await self.send_json({"type": "snapshot", "job": snapshot})

    async def job_update(self, event):
        self._last_sent = event["job"]
        await self.send_json({"type": "update", "job": event["job"]})

    async def _poll(self):
        while True:
            await asyncio.sleep(self.poll_seconds if self._grouped else self.poll_seconds_without_layer)
            if not self._grouped:
                await self._join_group()
            snapshot = await self._allowed_snapshot(reap=True)
            if snapshot is None:
                await self.close(code=CLOSE_FORBIDDEN)
                return
            if snapshot != self._last_sent:
                self._last_sent = snapshot
                await self.send_json({"type": "update", "job": snapshot})
            if snapshot["status"] in Job.FINISHED:
                return

    @database_sync_to_async
    def _allowed_snapshot(self, reap: bool = False):
        job = Job.objects.select_related("project").filter(uuid=self.job_uuid).first()
        if job is None or not can_view(self.scope.get("user"), self.scope.get("session"), job):
            return None
        if reap and job.status == Job.Status.RUNNING and settings.JOB_STALE_SECONDS:
            from biovlm_web.core.jobs import reap_stale_jobs

            if reap_stale_jobs():
                job.refresh_from_db()
        return job.snapshot()
