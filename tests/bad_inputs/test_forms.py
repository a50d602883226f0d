"""Bad files through the multipart upload API and the tomogram upload form: all or nothing is stored."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from biovlm_web.tomograms.models import Tomogram
from tests.bad_inputs.conftest import StoredState

# Every corpus file that an upload must reject, with the error code it must give.
REJECTED_CODES = {
    "extended_header_missing": "truncated",
    "truncated": "truncated",
    "truncated_no_index": "unreadable",
    "bomb": "too_many_pixels",
    "traversal_zip": "unsafe",
    "traversal_tar": "unsafe",
    "tar_bomb": "unsafe",
    "zip_bomb": "unsafe",
}


@pytest.fixture
def page_client(personas) -> Client:
    client = Client()
    client.force_login(personas["owner"])
    return client


def post_files(client, url, corpus, fields: dict[str, list[str]], **data):
    with ExitStack() as stack:
        files = {
            field: [stack.enter_context(corpus[case].open("rb")) for case in cases] for field, cases in fields.items()
        }
        return client.post(url, {**files, **data})


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_multipart_rejects_every_bad_file(owner_client, dataset, settings, corpus):
    state = StoredState(settings)
    cases = ["little_endian_reference", *REJECTED_CODES]

    response = post_files(owner_client, f"/api/datasets/{dataset.uuid}/files/", corpus, {"file": cases})

    assert response.status_code == 400
    body = response.json()
    assert body["detail"].startswith(f"{len(REJECTED_CODES)} of {len(cases)} files were rejected.")
    assert "Nothing was stored" in body["detail"]
    codes = {error["file"]: error["code"] for error in body["errors"]}
    assert codes == {corpus[case].name: code for case, code in REJECTED_CODES.items()}
    state.assert_unchanged()


def test_tomogram_form_rejects_truncated(page_client, personas, settings, corpus):
    state = StoredState(settings)
    url = f"/projects/{personas['project'].uuid}/tomograms/upload/"

    response = post_files(page_client, url, corpus, {"volumes": ["truncated"]})

    assert response.status_code == 302
    (message,) = messages_of(response)
    assert message.startswith("Nothing was stored: truncated.mrc: the file is truncated")
    assert Tomogram.objects.count() == 0
    state.assert_unchanged()


def test_tomogram_form_holds_csv_without_unit(page_client, personas, settings, corpus):
    state = StoredState(settings)
    url = f"/projects/{personas['project'].uuid}/tomograms/upload/"
    fields = {"volumes": ["particle_tomogram"], "references": ["particles_no_unit"]}

    rejected = post_files(page_client, url, corpus, fields)

    (message,) = messages_of(rejected)
    assert message.startswith("Nothing was stored")
    assert "Reference picks rejected: particles_no_unit.csv: " in message
    assert message.count("particles_no_unit.csv") == 1
    assert "states no unit" in message
    assert Tomogram.objects.count() == 0
    state.assert_unchanged()

    accepted = post_files(page_client, url, corpus, fields, reference_unit="pixel")

    assert messages_of(accepted)[-1] == "Uploaded 1 tomogram."
    tomogram = Tomogram.objects.get()
    assert tomogram.reference_summary["count"] == 12
    assert tomogram.reference_summary["unit"] == "pixel"


@pytest.mark.parametrize(
    ("case", "warning"), [("portal_points_zyx", "z and x look swapped"), ("imod_points_scaled", "a second time")]
)
def test_tomogram_form_warns_about_picks(page_client, personas, corpus, case, warning):
    url = f"/projects/{personas['project'].uuid}/tomograms/upload/"

    response = post_files(page_client, url, corpus, {"volumes": ["particle_tomogram"], "references": [case]})

    assert messages_of(response) == ["Uploaded 1 tomogram."]
    warnings = Tomogram.objects.get().reference_summary["warnings"]
    assert any(item.startswith(corpus[case].name) and warning in item for item in warnings), warnings
