"""``python -m pipelines.personalize``: what it refuses before anything starts."""

from pipelines import personalize


def test_without_redis_it_fails_naming_the_flag_and_starts_no_server(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where an embedded Redis would keep its files
    events = tmp_path / "events.jsonl"
    events.write_text("")
    assert personalize.main([f"--input={events}", "--insecure_dev_key"]) == 2
    assert "--redis is required" in capsys.readouterr().err
    assert not (tmp_path / ".microtarget").exists()


def test_without_input_it_fails_naming_the_flag(capsys):
    assert personalize.main(["--redis=redis://127.0.0.1:1/0"]) == 2
    assert "--input is required" in capsys.readouterr().err


def test_an_input_that_matches_nothing_fails_at_start(tmp_path, capsys):
    code = personalize.main([f"--input={tmp_path / 'none*.avro'}", "--redis=redis://127.0.0.1:1/0"])
    assert code == 2
    assert "no file matches input" in capsys.readouterr().err
