import yaml
from click.testing import CliRunner

from roadparse.cli import main
from roadparse.config import Settings
from roadparse.workspace import Workspace


def test_config_defaults_is_complete_yaml():
    result = CliRunner().invoke(main, ["config", "--defaults"])
    assert result.exit_code == 0
    assert Settings.model_validate(yaml.safe_load(result.output)) == Settings()


def test_config_with_bad_key_is_one_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("roi:\n  tile_sise: 512\n")
    result = CliRunner().invoke(main, ["config", "-c", str(path)])
    assert result.exit_code != 0
    assert "roi.tile_sise: unknown key" in result.output and "c.yaml" in result.output


def test_status_shows_each_stage(tmp_path):
    ws = Workspace(tmp_path)
    run = ws.begin("roi", {})
    run.set_total(4)
    run.record_item("f1", {})
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 0
    lines = dict(line.split(None, 1) for line in result.output.strip().splitlines())
    assert lines["roi"] == "partial (1 of 4)"
    assert lines["masks"] == "missing"


def test_every_subcommand_has_help():
    runner = CliRunner()
    for name in main.list_commands(None):
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
