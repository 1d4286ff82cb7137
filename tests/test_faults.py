"""Fault injection: every way a hostile but fair user can break a command gives one line
naming the right file or flag, the right exit code, and leaves nothing half-written.

Each probe runs a script's command in this process (conftest.call_script: parsing, the
error boundary, the exit code) on a real run directory that the probe corrupts; the
read-only probes run as the user nobody (a forked process, when the tests run as root,
whose permissions bypass every mode bit). The IDX
reader, the config validation and the flag types are also fed malformed inputs by
hypothesis (profile ``hml_vae``: ``HYPOTHESIS_PROFILE=thorough`` tries more).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import math
import os
import shutil
import tempfile
import typing
from pathlib import Path

import numpy as np
import pytest
from conftest import call_script, write_idx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hml_vae import cli, families, runs
from hml_vae import config as config_module
from hml_vae.config import Config
from hml_vae.data import idx
from hml_vae.errors import ConfigError, DataError

# Examples per property: fixed, so a CI run tries a known number (the report quotes it).
settings.register_profile("hml_vae", max_examples=100, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("thorough", parent=settings.get_profile("hml_vae"),
                          max_examples=3000)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "hml_vae"))

TINY = ("--model", "stacked", "--preset", "tiny", "--epochs", "1", "--limit", "200",
        "--no-plots")


def one_error_line(result) -> str:
    """The command's last stderr line, after checking it failed without a traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def snapshot(directory) -> dict:
    """{relative path: bytes} of every file under ``directory``: what a failed command
    must leave as it was."""
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


# --- Runs to break ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run, started with --restart over a stale interrupted run of other
    settings, and a copy of its ``.incomplete`` directory taken just before it was renamed
    into place: a run killed after training, with its config, history and checkpoint."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    stale = runs.incomplete_dir(run_dir)
    (stale / "checkpoints").mkdir(parents=True)
    config_module.make_config("vae", "tiny").save(stale / "config.json")
    (stale / "checkpoints" / runs.CHECKPOINT_FILE).write_bytes(b"stale")
    interrupted = tmp_path_factory.mktemp("interrupted") / "run"
    finish = runs.RunWriter.finish

    def copy_then_finish(writer):
        shutil.copytree(writer.work_dir, runs.incomplete_dir(interrupted))
        return finish(writer)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs.RunWriter, "finish", copy_then_finish)
        result = call_script("train.py", *TINY, "--output", run_dir, "--restart")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"--restart: removed the interrupted run {stale}" in result.stderr
    assert "Resuming" not in result.stderr and not stale.exists()
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1]
    assert (runs.incomplete_dir(interrupted) / "checkpoints" / runs.CHECKPOINT_FILE).is_file()
    return run_dir, interrupted


@pytest.fixture(scope="module")
def finished_run(trained):
    return trained[0]


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


# --- --output ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["file", "root", "below a file", "finished run"])
def test_an_output_that_cannot_be_a_new_run_is_refused(case, tmp_path, finished_run):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    output, expected = {
        "file": (a_file, "already exists (a file)"),
        "root": ("/", "already exists (a directory)"),
        "below a file": (a_file / "run", f"{a_file} is a file, not a directory"),
        "finished run": (finished_run, "holds a finished run"),
    }[case]
    before = snapshot(tmp_path), snapshot(finished_run)
    line = one_error_line(call_script("train.py", *TINY, "--output", output))
    assert line.startswith("error: ") and expected in line and "--output" in line
    assert (snapshot(tmp_path), snapshot(finished_run)) == before


def test_an_empty_incomplete_directory_is_no_run_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    runs.incomplete_dir(run_dir).mkdir()
    result = call_script("train.py", *TINY, "--output", run_dir)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "run.incomplete exists but holds no config.json" in line and "--restart" in line
    assert "different settings" not in line
    assert list(runs.incomplete_dir(run_dir).iterdir()) == [] and not run_dir.exists()


# --- Flags (these passed before; kept so they stay so) -----------------------------------------


@pytest.mark.parametrize(("flags", "message"), [
    (("--learning-rate", "inf"), "--learning-rate: expected a positive number, got inf"),
    (("--learning-rate", "nan"), "--learning-rate: expected a positive number, got nan"),
    (("--learning-rate", "-1"), "--learning-rate: expected a positive number, got -1.0"),
    (("--epochs", "0"), "--epochs: expected a positive integer, got 0"),
    (("--limit", "1e3"), "--limit: expected a positive integer, got '1e3'"),
    (("--hidden", "16,x"), "comma-separated positive integers"),
    (("--model", "gan"), "invalid choice: 'gan'"),
])
def test_bad_flags_are_refused_by_the_parser(flags, message, tmp_path):
    result = call_script("train.py", *TINY, *flags, "--output", tmp_path / "run")
    assert result.returncode == 2
    assert message in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_a_flag_of_another_family_names_the_flag_and_the_error_comes_alone(tmp_path):
    result = call_script("train.py", *TINY, "--beta", "2", "--output", tmp_path / "run")
    assert result.returncode == 2
    assert one_error_line(result) == (
        "error: --beta does not apply to --model stacked; it is an option of vae, conv_vae. "
        "Leave it out.")
    assert "config: {" not in result.stderr  # the resolved config comes after the checks
    assert list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback_above_the_same_line(tmp_path):
    arguments = (*TINY, "--beta", "2", "--output", tmp_path / "run")
    plain = call_script("train.py", *arguments)
    debug = call_script("train.py", *arguments, "--debug")
    assert debug.returncode == plain.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr and "ConfigError" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == one_error_line(plain)


def test_corrupt_idx_data_names_the_file(tmp_path, small_idx_dir):
    (small_idx_dir / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0]))
    result = call_script("train.py", *TINY, "--data-dir", small_idx_dir,
                         "--output", tmp_path / "run")
    assert result.returncode == 2
    assert f"{small_idx_dir / 't10k-images-idx3-ubyte'}: truncated inside its header" in (
        one_error_line(result))
    assert not (tmp_path / "run").exists()
    assert not runs.incomplete_dir(tmp_path / "run").exists()


def test_a_limit_above_the_data_size_says_so(small_idx_dir, capsys):
    from hml_vae.data import load_dataset

    data = load_dataset(data_dir=small_idx_dir, limit=100_000)
    available = 5_600 - idx.VALIDATION_SIZE  # the fixture's training images less HOML's
    assert len(data.train) == available
    assert capsys.readouterr().err.strip() == (
        f"note: limit 100,000 (--limit) is more than the {available} training images of "
        f"fashion_mnist; training on all {available}.")
    load_dataset(data_dir=small_idx_dir, limit=available)
    assert capsys.readouterr().err == ""


# --- Corrupt files of a finished run ---------------------------------------------------------


def truncate(path, keep: int = 1000) -> None:
    path.write_bytes(path.read_bytes()[:keep])


CORRUPTIONS = {
    "metrics.json": (lambda run: (run / "metrics.json").write_text("{garbage"),
                     "metrics.json: not a valid metrics file"),
    "config.json": (lambda run: (run / "config.json").write_text("nope"),
                    "config.json: not valid JSON"),
    "binary config.json": (lambda run: (run / "config.json").write_bytes(b"\x8b\xff\x00"),
                           "config.json: not valid JSON"),
    "config.json of another version": (
        lambda run: (run / "config.json").write_text('{"model": "stacked", "colour": 1}'),
        "config.json: unknown config keys ['colour']"),
    "truncated model.keras": (lambda run: truncate(run / "model.keras"),
                              "model.keras: not a readable .keras file (1000 bytes"),
    "truncated decoder.keras": (lambda run: truncate(run / "decoder.keras", 0),
                                "decoder.keras: not a readable .keras file (0 bytes"),
}


@pytest.mark.parametrize("script", ["evaluate.py", "plot.py", "export.py"])
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_file_of_a_run_is_named(script, corruption, run_copy, tmp_path):
    corrupt, message = CORRUPTIONS[corruption]
    corrupt(run_copy)
    before = snapshot(run_copy)
    base = tmp_path / "saved_models"
    extra = ("--name", "probe", "--base", base) if script == "export.py" else ()
    result = call_script(script, run_copy, *extra)
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith(f"error: {run_copy}/") and message in line, line
    assert snapshot(run_copy) == before
    assert not base.exists() or list(base.rglob("*")) == []  # nothing published


# --- Interrupted and diverged runs -------------------------------------------------------------


@pytest.fixture
def interrupted_copy(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs.incomplete_dir(trained[1]), runs.incomplete_dir(run_dir))
    return run_dir


def test_evaluate_calls_an_interrupted_run_interrupted(interrupted_copy):
    line = one_error_line(call_script("evaluate.py", interrupted_copy))
    assert "has not finished: its training stopped" in line and "resume" in line


def test_a_truncated_checkpoint_is_named_and_restart_offered(interrupted_copy):
    # (--restart itself: the `trained` fixture starts over with it.)
    work_dir = runs.incomplete_dir(interrupted_copy)
    checkpoint = work_dir / "checkpoints" / runs.CHECKPOINT_FILE
    truncate(checkpoint, 4096)
    assert not checkpoint.with_name(checkpoint.name + ".bkp").exists()  # one epoch: no older
    before = snapshot(work_dir)
    result = call_script("train.py", *TINY, "--output", interrupted_copy)
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"{checkpoint}: the checkpoint of the interrupted run cannot be read" in line
    assert "--restart" in line
    assert "config: {" not in result.stderr  # found before anything else is said
    assert snapshot(work_dir) == before and not interrupted_copy.exists()


def test_restart_is_refused_in_a_multi_worker_cluster(interrupted_copy, monkeypatch):
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
               "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    before = snapshot(runs.incomplete_dir(interrupted_copy))
    result = call_script("train.py", *TINY, "--strategy", "multi_worker", "--restart",
                         "--output", interrupted_copy)
    assert result.returncode == 2
    assert one_error_line(result).startswith("error: --restart cannot be used in a "
                                             "multi-worker cluster")
    assert snapshot(runs.incomplete_dir(interrupted_copy)) == before


def test_restart_never_removes_a_finished_run(finished_run):
    before = snapshot(finished_run)
    result = call_script("train.py", *TINY, "--output", finished_run, "--restart")
    assert result.returncode == 1 and "holds a finished run" in one_error_line(result)
    assert snapshot(finished_run) == before


def test_a_corrupt_config_of_an_interrupted_run_is_named(interrupted_copy):
    config = runs.incomplete_dir(interrupted_copy) / "config.json"
    config.write_text('{"model": "stacked", "epochs": "many"}')
    line = one_error_line(call_script("train.py", *TINY, "--output", interrupted_copy))
    assert f"{config}: epochs must be a whole number, got 'many'" in line
    assert "--restart" in line


def test_a_diverged_run_says_so_everywhere_and_its_history_is_json(tmp_path):
    run_dir = tmp_path / "run"
    result = call_script("train.py", *TINY, "--optimizer", "sgd", "--learning-rate", "1e12",
                         "--output", run_dir)
    assert result.returncode == 1
    assert "training diverged" in one_error_line(result)
    work_dir = runs.incomplete_dir(run_dir)
    assert not run_dir.exists() and not (work_dir / "model.keras").exists()

    def no_constants(name):
        raise AssertionError(f"history.json holds bare {name}, which is not JSON")

    history = json.loads((work_dir / "history.json").read_text(), parse_constant=no_constants)
    assert history["loss"][-1] is None

    for script in ("evaluate.py", "plot.py"):
        line = one_error_line(call_script(script, run_dir))
        assert f"{run_dir} has not finished: its training diverged" in line
        assert "lower --learning-rate" in line and "resume" not in line


# --- Read-only places ------------------------------------------------------------------------

NOBODY = 65534


def call_scripts_as_nobody(probes: list[list]) -> list[tuple[int, str]]:
    """(exit code, stderr) of each ``call_script(*probe)``, run by a user who may write
    only where permissions allow: as root, in a forked process that became ``nobody``
    (the modules are already imported, so no Python start-up is paid again)."""
    if os.geteuid() != 0:
        return [(result.returncode, result.stderr)
                for result in (call_script(*probe) for probe in probes)]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            results = [(result.returncode, result.stderr)
                       for result in (call_script(*probe) for probe in probes)]
            text, status = json.dumps(results), 0
        except BaseException as error:  # the parent reports it
            text = json.dumps(repr(error))
        finally:
            with os.fdopen(write, "w") as pipe:
                pipe.write(text)
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, text
    return [tuple(result) for result in json.loads(text)]


def test_read_only_places_are_one_line_and_nothing_is_written(finished_run):
    base = Path(tempfile.mkdtemp(prefix="hml_vae-faults-"))  # /tmp: nobody can reach it
    locked, read_only_run = base / "locked", base / "read-only-run"
    locked.mkdir()
    shutil.copytree(finished_run, read_only_run)
    paths = [base, locked, read_only_run, *read_only_run.iterdir()]
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot(read_only_run)
    try:
        results = call_scripts_as_nobody([
            ["train.py", *TINY, "--output", locked / "run"],
            ["train.py", *TINY, "--output", locked / "deeper" / "run"],
            ["evaluate.py", read_only_run],
            ["plot.py", read_only_run],
        ])
        assert list(locked.iterdir()) == [] and snapshot(read_only_run) == before
    finally:
        for path in paths:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base)
    expected = [f"cannot create {locked / 'run'}: {locked} is not writable",
                f"cannot create {locked / 'deeper' / 'run'}: {locked} is not writable",
                f"{read_only_run} is not writable", f"{read_only_run} is not writable"]
    for (code, stderr), message in zip(results, expected, strict=True):
        assert code == 1 and "Traceback" not in stderr, stderr[-2000:]
        assert message in stderr.strip().splitlines()[-1]


# --- Property-based: malformed IDX files -----------------------------------------------------


def idx_bytes(images: np.ndarray) -> bytes:
    header = (0x0800 | images.ndim).to_bytes(4, "big") + b"".join(
        size.to_bytes(4, "big") for size in images.shape)
    return header + images.astype(np.uint8).tobytes()


VALID_IMAGES = idx_bytes(np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256)
VALID_LABELS = idx_bytes(np.arange(5) % 10)


@st.composite
def damaged_idx(draw):
    """Bytes of an IDX file: random, or a valid one truncated, extended, or with bytes
    (often in the header) overwritten."""
    kind = draw(st.sampled_from(["random", "truncated", "extended", "overwritten"]))
    original = draw(st.sampled_from([VALID_IMAGES, VALID_LABELS]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "truncated":
        return original[:draw(st.integers(0, len(original) - 1))]
    if kind == "extended":
        return original + draw(st.binary(min_size=1, max_size=8))
    damaged = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, 15) | st.integers(0, len(damaged) - 1)) % len(damaged)
        damaged[position] = draw(st.integers(0, 255))
    return bytes(damaged)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("scratch")


@PROFILE
@given(content=damaged_idx(), compress=st.booleans(),
       magic=st.sampled_from([idx.IMAGES_MAGIC, idx.LABELS_MAGIC]))
def test_the_idx_reader_gives_a_data_error_naming_the_file_or_a_consistent_array(
        scratch, content, compress, magic):
    path = scratch / ("file.gz" if compress else "file")
    if compress:  # a valid gzip stream, or the same cut short
        content = gzip.compress(content)
    path.write_bytes(content)
    raw = gzip.decompress(content) if compress else content
    try:
        array = idx.read_idx(path, magic)
    except DataError as error:
        assert str(path) in str(error) and error.exit_code == 2
        return
    # Accepted: then it is exactly what the header says.
    assert int.from_bytes(raw[:4], "big") == magic and array.dtype == np.uint8
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(array.ndim))
    assert array.shape == shape and len(raw) == 4 + 4 * array.ndim + array.size
    assert array.tobytes() == raw[4 + 4 * array.ndim:]


def test_a_gzip_stream_cut_anywhere_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    whole = gzip.compress(VALID_LABELS)
    for cut in range(len(whole)):  # every place a download or a copy can stop
        path.write_bytes(whole[:cut])
        with pytest.raises(DataError) as raised:
            idx.read_idx(path, idx.LABELS_MAGIC)
        assert str(path) in str(raised.value)


def test_the_reader_reads_back_what_write_idx_wrote(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(idx.read_idx(write_idx(tmp_path / "x", images),
                                               idx.IMAGES_MAGIC), images)


# --- Property-based: config validation and the flag types ------------------------------------

JSON_VALUES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
               | st.lists(st.integers() | st.floats(), max_size=3)
               | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
HINTS = typing.get_type_hints(Config)
FIELDS = {field.name: field for field in config_module.fields()}
# A valid starting point per family, so that one to three wrong values reach the checks
# behind the type check (ranges, family options, sizes against the image shape).
PRESETS = {name: json.loads(config_module.make_config(name, "tiny").to_json())
           for name in families.names()}


def plausible(field) -> st.SearchStrategy:
    """Values of the field's type and near its range, and any other JSON value."""
    hint = str(HINTS[field.name])
    options = [JSON_VALUES]
    choices = config_module.field_choices(field)
    if choices:
        options.append(st.sampled_from(choices))
    if "tuple" in hint:
        options.append(st.lists(st.integers(-2, 70), max_size=4))
    elif "int" in hint:
        options.append(st.integers(-3, 70))
    elif "float" in hint:
        options.append(st.floats(-2, 2) | st.sampled_from([math.nan, math.inf, -math.inf]))
    elif "bool" in hint:
        options.append(st.booleans())
    return st.one_of(options)


@st.composite
def saved_configs(draw) -> dict:
    """A family's tiny preset as config.json holds it, with one to three values replaced
    (or removed, or a key added)."""
    values = dict(PRESETS[draw(st.sampled_from(sorted(PRESETS)))])
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3,
                              unique=True)):
        values[name] = draw(plausible(FIELDS[name]))
    if draw(st.integers(0, 9)) == 0:
        values.pop(draw(st.sampled_from(sorted(values))))
    if draw(st.integers(0, 9)) == 0:
        values[draw(st.text(max_size=5))] = 1
    return values


@PROFILE
@given(values=saved_configs())
def test_a_saved_config_loads_and_round_trips_or_is_a_config_error_naming_the_file(
        scratch, values):
    path = scratch / "config.json"
    path.write_text(json.dumps(values))
    try:
        config = Config.load(path)
    except ConfigError as error:
        assert str(error).startswith(f"{path}: ") and error.exit_code == 2
        return
    config.save(path)
    assert Config.load(path) == config


FLAG_TEXT = st.text(max_size=12) | st.sampled_from(
    ["inf", "-inf", "nan", "1e309", "0", "-0", "1e-320", "16,", ",", "8x8", "99999999999999999"])


@PROFILE
@given(flag=st.sampled_from(sorted(cli.config_flags())), text=FLAG_TEXT)
def test_any_flag_value_is_refused_by_the_parser_or_the_config_never_otherwise(flag, text):
    parser = cli.train_parser()
    arguments = ["--model", "vae", "--preset", "tiny", "--output", "x", f"{flag}={text}"]
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            args = parser.parse_args(arguments)
        except SystemExit as exit_:
            assert exit_.code == 2  # argparse's one-line usage error
            return
    try:
        config = cli.config_from_args(args)
    except ConfigError:
        return
    value = getattr(config, cli.config_flags()[flag])
    if isinstance(value, float):
        assert math.isfinite(value)


@PROFILE
@given(text=FLAG_TEXT)
def test_number_types_accept_only_what_they_promise(text):
    for parse, accept in [(cli.positive_float, lambda value: 0 < value < math.inf),
                          (cli.non_negative_float, lambda value: 0 <= value < math.inf),
                          (cli.finite_float, math.isfinite),
                          (cli.positive_int, lambda value: value > 0),
                          (cli.int_list, lambda values: all(size > 0 for size in values)),
                          (cli.image_size, lambda size: len(size) == 2 and min(size) >= 8)]:
        try:
            value = parse(text)
        except argparse.ArgumentTypeError:
            continue
        assert accept(value), (parse.__name__, text, value)
