"""regenerate: which generated files are absent, and the SQL that lets Immich's missing jobs redo them."""
from ansible_collections.homelab.immich.plugins.module_utils import regenerate


def test_absent_generated_maps_paths_and_counts(tmp_path):
    (tmp_path / "thumbs" / "u").mkdir(parents=True)
    (tmp_path / "thumbs" / "u" / "a_thumbnail.webp").write_bytes(b"t")
    rows = [("asset_file", "1", "thumbnail", "/data/thumbs/u/a_thumbnail.webp"),
            ("asset_file", "2", "preview", "/data/thumbs/u/a_preview.jpeg"),
            ("asset_file", "3", "encoded_video", "/data/encoded-video/u/v.mp4"),
            ("person", "9", "person", "/data/thumbs/u/face.jpeg"),
            ("asset_file", "4", "preview", "/mnt/elsewhere/x.jpeg")]
    inst = {"upload_location": str(tmp_path), "media_location": "/data"}
    found = regenerate.absent_generated(inst, "current", rows=rows)
    assert found["asset_file"] == ["2", "3"] and found["person"] == ["9"] and found["checked"] == 5
    assert found["counts"] == {"preview": 1, "encoded_video": 1, "person": 1}
    assert regenerate.jobs_for(found["counts"]) == ["thumbnailGeneration", "videoConversion"]


def test_repair_script_is_one_transaction_with_ids_as_copy_data():
    sql = regenerate.repair_script("legacy", ["11111111-1111-1111-1111-111111111111"], [], ("previewAt", "thumbnailAt")).decode()
    assert sql.startswith("\\set ON_ERROR_STOP on\nBEGIN;") and sql.rstrip().endswith("COMMIT;")
    assert 'DELETE FROM "asset_files" f USING homelab_absent_file' in sql
    assert '"previewAt" = NULL, "thumbnailAt" = NULL' in sql
    assert "COPY homelab_absent_file FROM STDIN;\n11111111-1111-1111-1111-111111111111\n\\.\n" in sql


def test_job_request():
    method, url, body, headers = regenerate.job_request("http://127.0.0.1:2283/", "k", "thumbnailGeneration")
    assert (method, url) == ("PUT", "http://127.0.0.1:2283/api/jobs/thumbnailGeneration")
    assert body == b'{"command": "start", "force": false}' and headers["x-api-key"] == "k"
