"""A multipart upload handler that stops reading once a file passes the size limit."""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload, TemporaryFileUploadHandler

from biovlm_web.uploads.storage import temp_dir


class SizeLimitUploadHandler(FileUploadHandler):
    """Stop the parse as soon as one file's bytes pass UPLOAD_MAX_FILE_SIZE.

    It must come before the handler that stores the data, which then never receives the
    block that passes the limit. The view checks ``rejected_name`` after parsing and
    returns 413.
    """

    def __init__(self, request=None, max_size: int | None = None):
        super().__init__(request)
        self.max_size = settings.UPLOAD_MAX_FILE_SIZE if max_size is None else max_size
        self.received = 0
        self.rejected_name: str | None = None

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        temp_dir()  # TemporaryFileUploadHandler needs FILE_UPLOAD_TEMP_DIR to exist.

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_size:
            self.rejected_name = self.file_name
            # connection_reset=False: Django reads and discards the rest of the body, so the
            # client receives the 413 response instead of a reset connection.
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None


def disk_upload_handlers(request) -> list[FileUploadHandler]:
    """Return the handlers for file uploads: the size limit, then temporary files on disk.

    Every file goes to disk, never to memory, because the type sniffers and metadata
    readers need a path.
    """
    return [SizeLimitUploadHandler(request), TemporaryFileUploadHandler(request)]
