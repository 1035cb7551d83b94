import pandas as pd
from IPython.core.error import UsageError

from ftpe_magics import PromptResult, get_session


def run(shell, cell):
    result = shell.run_cell(cell)
    return result


def test_load_ext_registers_and_unload_removes(shell, capsys):
    assert "ftpe" in shell.magics_manager.magics["line"]
    assert "prompt" in shell.magics_manager.magics["cell"]
    shell.run_line_magic("unload_ext", "ftpe_magics")
    assert "prompt" not in shell.magics_manager.magics["cell"]
    shell.run_line_magic("load_ext", "ftpe_magics")
    assert "%%prompt" in capsys.readouterr().out


def test_help_comes_from_magic_arguments(shell):
    doc = shell.magics_manager.magics["cell"]["prompt"].__doc__
    for option in ("--over", "--samples", "--temperature", "--name", "--stream", "--raw", "--system", "--out"):
        assert option in doc
    assert "--dtype" in shell.magics_manager.magics["line"]["ftpe"].__doc__


def test_prompt_loads_default_once_and_keeps_result(shell, capsys):
    shell.user_ns["topic"] = "the movie"
    session = get_session()
    loads_before = session.load_count
    for _ in range(3):
        assert run(shell, "%%prompt --out answer --max-new-tokens 3\nTell me about {topic}").success
    assert session.load_count == loads_before + 1
    assert "No model loaded: loading the default model" in capsys.readouterr().out
    answer = shell.user_ns["answer"]
    assert isinstance(answer, PromptResult) and answer.prompts == ["Tell me about the movie"]
    assert answer.settings.max_new_tokens == 3


def test_config_sets_defaults(shell):
    shell.run_line_magic("config", "Ftpe.max_new_tokens = 2")
    assert run(shell, "%%prompt --out r\nhello").success
    assert shell.user_ns["r"].settings.max_new_tokens == 2


def test_unknown_variable_is_a_usage_error_and_session_survives(shell):
    assert run(shell, "%%prompt --out r\nhello").success
    loads = get_session().load_count
    shell.user_ns["review"] = "fine"
    result = run(shell, "%%prompt\nReview: {reveiw}")
    assert isinstance(result.error_in_exec, UsageError)
    assert "{reveiw}" in str(result.error_in_exec) and "review" in str(result.error_in_exec)
    assert get_session().loaded and get_session().load_count == loads
    missing = run(shell, "%%prompt --over nothing_here\n{item}")
    assert "no variable named 'nothing_here'" in str(missing.error_in_exec)


def test_over_dataframe_and_named_rerun_shows_diff(shell, capsys):
    shell.user_ns["reviews"] = pd.DataFrame({"text": ["good", "bad", "so so"]})
    assert run(shell, "%%prompt --over reviews --out batch --name sent --max-new-tokens 3\nReview: {text}").success
    assert shell.user_ns["batch"].prompts[1] == "Review: bad"
    capsys.readouterr()
    assert run(shell, "%%prompt --over reviews --name sent --max-new-tokens 4\nReview: {text}!").success
    out = capsys.readouterr().out
    assert "diff against the previous run of 'sent'" in out and "max_new_tokens: 3 -> 4" in out


def test_stream_prints_tokens_and_samples_group(shell, capsys):
    assert run(shell, "%%prompt --stream --raw --out s --max-new-tokens 5\nthe movie").success
    out = capsys.readouterr().out
    assert shell.user_ns["s"].text.strip() and shell.user_ns["s"].text.strip()[:3] in out
    assert run(shell, "%%prompt --samples 4 --temperature 2 --seed 3 --out many\nhi").success
    assert sum(count for _, count in shell.user_ns["many"].sample_counts()) == 4


def test_status_history_unload(shell, capsys):
    run(shell, "%%prompt\nhello")
    shell.run_line_magic("ftpe", "status")
    shell.run_line_magic("ftpe", "history")
    out = capsys.readouterr().out
    assert "parameters" in out and "process rss" in out and "first output" in out
    shell.run_line_magic("ftpe", "unload")
    assert not get_session().loaded
    bad = run(shell, "%ftpe load ./no/such/dir")
    assert isinstance(bad.error_in_exec, UsageError) and "No model folder" in str(bad.error_in_exec)


def test_quoted_option_values_reach_the_model_without_quotes(shell):
    ok = shell.run_cell('%%prompt --out r --max-new-tokens 2 --system "Be brief, be kind."\nhi')
    assert ok.success
    assert shell.user_ns["r"].settings.system == "Be brief, be kind."
    ok = shell.run_cell("%%prompt --out r --max-new-tokens 2 --system 'single quotes'\nhi")
    assert shell.user_ns["r"].settings.system == "single quotes"


def test_loading_the_extension_shows_results_as_html(shell):
    assert run(shell, "%%prompt --out r --max-new-tokens 2\nhello").success
    data, _ = shell.display_formatter.format(shell.user_ns["r"])
    assert "class='ftpe-result'" in data["text/html"]
