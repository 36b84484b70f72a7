"""Where a real run's outputs go, as a user finds them: outputs/<project>/<time>/ and a `latest` link to the
last one kept."""

from __future__ import annotations

from cli_fixtures import wanbatch

GOOD = "defaults: [wanbatch, _self_]\nproject: {name: film}\nscenes:\n  - {id: quay, prompt: A quay at dawn.}\n"


def test_a_real_run_keeps_a_latest_link_beside_its_time_stamped_folders(tmp_path):
    (tmp_path / "film").mkdir()
    (tmp_path / "film" / "project.yaml").write_text(GOOD)
    got = wanbatch(
        "--config-dir", "film", "stitch.enabled=false", cwd=tmp_path, env={"WANBATCH_CACHE_DIR": str(tmp_path / "c")}
    )
    assert got.returncode == 0, got.stderr
    runs = tmp_path / "outputs" / "film"
    kept = [p for p in runs.iterdir() if p.name != "latest"]
    assert len(kept) == 1 and (kept[0] / "manifest.json").is_file()
    latest = runs / "latest"
    assert latest.is_symlink() and latest.resolve() == kept[0].resolve()
    assert str(kept[0].name) in got.stdout  # the run directory the last lines name is the one linked
