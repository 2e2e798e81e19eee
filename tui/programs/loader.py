"""From `--program`, `--signature`, `--tools` and `--load` to a program factory and its ProgramInfo."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import dspy

from tui.config import Settings
from tui.programs.errors import ProgramError
from tui.programs.info import program_info
from tui.streaming.program_info import ProgramInfo

BUILT_INS = ("predict", "cot", "react")
DEFAULT_SIGNATURE = "question -> answer"
# Files and modules run once per process, as `import` would: the same spec gets the same objects.
_LOADED_FILES: dict[Path, ModuleType] = {}


@dataclass(frozen=True)
class LoadedProgram:
    """The program as loaded once, and how to get a fresh copy of it for each attempt."""

    base: dspy.Module
    info: ProgramInfo

    def build(self) -> dspy.Module:
        """A fresh copy: state a run leaves on its program never leaks into another stream."""
        return self.base.deepcopy()


def load_program(settings: Settings, *, cwd: Path | None = None) -> LoadedProgram:
    """Load the program `settings` names; raises ProgramError (one line) on any mistake."""
    cwd = Path.cwd() if cwd is None else cwd
    spec = settings.program
    load = settings.load
    if load and Path(load).is_dir():
        program, label = _whole_saved_program(load, settings.allow_pickle), f"saved program {load}"
    elif spec in BUILT_INS:
        program, label = _built_in(settings, cwd), spec
    elif ":" in spec:
        program, label = _from_spec(spec, cwd), spec
    elif spec.endswith(".py"):
        program, label = _sole_program(spec, cwd)
    else:
        raise ProgramError(
            f"unknown program {spec!r}: use predict, cot, react, path/to/file.py[:NAME]"
            " or package.module:NAME"
        )
    if settings.tools and spec != "react":
        raise ProgramError("--tools is for --program react (a program from a file brings its own tools)")
    if settings.signature and spec not in BUILT_INS:
        raise ProgramError("--signature is for the built-in programs predict, cot and react")
    if load and not Path(load).is_dir():
        _load_state(program, load, settings.allow_pickle)
        label = f"{label} · {Path(load).name}"
    try:
        info = program_info(program, label)
    except ProgramError:
        raise
    except Exception as error:  # a program whose shape DSPy itself cannot describe
        raise ProgramError(f"cannot read the fields of {label}: {_first_line(error)}") from None
    return LoadedProgram(program, info)


# -- built-ins ---------------------------------------------------------------------------


def parse_signature(text: str, instructions: str | None = None) -> type[dspy.Signature]:
    try:
        signature = dspy.Signature(text, instructions) if instructions else dspy.Signature(text)
    except Exception as error:
        raise ProgramError(f"signature {text!r} does not parse: {_first_line(error)}") from None
    if not signature.input_fields or not signature.output_fields:
        raise ProgramError(f"signature {text!r} needs inputs and outputs: e.g. 'question -> answer'")
    return signature


def _built_in(settings: Settings, cwd: Path) -> dspy.Module:
    signature = parse_signature(settings.signature or DEFAULT_SIGNATURE, settings.instructions)
    if settings.program == "predict":
        return dspy.Predict(signature)
    if settings.program == "cot":
        return dspy.ChainOfThought(signature)
    if not settings.tools:
        raise ProgramError("--program react needs tools: pass --tools FILE.py (its public functions)")
    tools = load_tools(settings.tools, cwd)
    try:
        return dspy.ReAct(signature, tools=tools)
    except Exception as error:
        raise ProgramError(
            f"cannot build ReAct with the tools of {settings.tools}: {_first_line(error)}"
        ) from None


def load_tools(path: str, cwd: Path) -> list[Callable[..., Any]]:
    """Every public function defined in the file `path` (not ones it imports)."""
    module = _run_file(path, cwd)
    tools = [
        value
        for name, value in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == module.__name__
    ]
    if not tools:
        raise ProgramError(f"tools file {path} defines no public functions to use as tools")
    return tools


# -- programs from files and modules -----------------------------------------------------


def _from_spec(spec: str, cwd: Path) -> dspy.Module:
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise ProgramError(f"program {spec!r}: write path/to/file.py:NAME or package.module:NAME")
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _run_file(where, cwd)
    else:
        module = _import_module(where, cwd)
    if not hasattr(module, name):
        defined = sorted(n for n, v in vars(module).items() if _could_be_program(v) and not n.startswith("_"))
        hint = f" (it defines {', '.join(defined)})" if defined else ""
        raise ProgramError(f"{where} has no {name!r}{hint}")
    return _instantiate(getattr(module, name), f"{where}:{name}")


def _sole_program(path: str, cwd: Path) -> tuple[dspy.Module, str]:
    """`--program file.py`: the one program the file makes, an instance before a class."""
    module = _run_file(path, cwd)
    public = {n: v for n, v in vars(module).items() if not n.startswith("_")}
    instances = [n for n, v in public.items() if isinstance(v, dspy.Module)]
    classes = [
        n for n, v in public.items()
        if inspect.isclass(v) and issubclass(v, dspy.Module) and v.__module__ == module.__name__
    ]  # fmt: skip
    found = instances or classes
    if not found:
        raise ProgramError(f"{path} defines no program: no dspy.Module instance or subclass")
    if len(found) > 1:
        raise ProgramError(f"{path} defines several programs ({', '.join(found)}): name one, {path}:NAME")
    where = f"{path}:{found[0]}"
    return _instantiate(public[found[0]], where), where


def _could_be_program(value: Any) -> bool:
    return isinstance(value, dspy.Module) or (inspect.isclass(value) and issubclass(value, dspy.Module))


def _instantiate(value: Any, where: str) -> dspy.Module:
    if isinstance(value, dspy.Module):
        return value
    if inspect.isclass(value):
        if not issubclass(value, dspy.Module):
            raise ProgramError(f"{where} is the class {value.__name__}, which is not a dspy.Module subclass")
        made = _call(value, where)
    elif callable(value):
        made = _call(value, where)
        if not isinstance(made, dspy.Module):
            raise ProgramError(f"{where}() returned {type(made).__name__}, not a dspy.Module")
    else:
        raise ProgramError(
            f"{where} is a {type(value).__name__}: expected a dspy.Module, a Module subclass "
            "or a function of no arguments that returns one"
        )
    return made


def _call(factory: Any, where: str) -> Any:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        parameters = []
    required = [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if required:
        raise ProgramError(
            f"{where} needs arguments ({', '.join(required)}): give a function of no arguments"
        )
    try:
        return factory()
    except Exception as error:
        raise ProgramError(f"{where}() raised {type(error).__name__}: {_first_line(error)}") from None


def _ensure_on_path(*folders: Path) -> None:
    for folder in folders:
        text = str(folder)
        if text not in sys.path:
            sys.path.insert(0, text)


def _run_file(path: str, cwd: Path) -> ModuleType:
    file = (cwd / path).resolve()
    if file in _LOADED_FILES:
        return _LOADED_FILES[file]
    if not file.is_file():
        raise ProgramError(f"{path}: no such file")
    _ensure_on_path(cwd, file.parent)
    module_name = f"dspy_stream_user_{file.stem}_{abs(hash(file)) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ProgramError(f"{path}: cannot be imported as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as import does, so dataclasses and pickling inside it work.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[module_name]
        raise ProgramError(f"{path}:{error.lineno}: syntax error: {error.msg}") from None
    except Exception as error:
        del sys.modules[module_name]
        raise ProgramError(
            f"{path}: {_where_raised(error, file)}{type(error).__name__}: {_first_line(error)}"
        ) from None
    _LOADED_FILES[file] = module
    return module


def _where_raised(error: BaseException, file: Path) -> str:
    """`line N: ` of the user's file where the error was raised, when it was raised there."""
    line = None
    traceback = error.__traceback__
    while traceback is not None:
        if Path(traceback.tb_frame.f_code.co_filename) == file:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return f"line {line}: " if line is not None else ""


def _import_module(name: str, cwd: Path) -> ModuleType:
    _ensure_on_path(cwd)
    try:
        return importlib.import_module(name)
    except SyntaxError as error:
        raise ProgramError(f"{error.filename}:{error.lineno}: syntax error: {error.msg}") from None
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(error.name + ".")):
            raise ProgramError(f"no module named {name!r} (importable from the current directory)") from None
        raise ProgramError(f"{name}: {type(error).__name__}: {_first_line(error)}") from None
    except Exception as error:
        raise ProgramError(f"{name}: {type(error).__name__}: {_first_line(error)}") from None


# -- saved state ---------------------------------------------------------------------------


def _load_state(program: dspy.Module, path: str, allow_pickle: bool) -> None:
    file = Path(path)
    if not file.exists():
        raise ProgramError(f"state file {path}: no such file")
    if file.suffix == ".pkl" and not allow_pickle:
        raise ProgramError(
            f"state file {path} is a pickle, which runs code: pass --allow-pickle if you trust it"
        )
    if file.suffix not in (".json", ".pkl"):
        raise ProgramError(
            f"state file {path}: expected a .json (or, with --allow-pickle, .pkl) file from save()"
        )
    if file.suffix == ".json":
        unfit = _unfit_state(program, file)
        if unfit:
            raise ProgramError(f"state file {path} was saved from another program: {unfit}")
    try:
        program.load(str(file), allow_pickle=allow_pickle)
    except Exception as error:
        raise ProgramError(
            f"state file {path} does not fit the program: {type(error).__name__}: {_first_line(error)}"
        ) from None


def _unfit_state(program: dspy.Module, file: Path) -> str | None:
    """Why the saved predictors are not this program's, in their names; None when they are."""
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # DSPy's own load says what is wrong with the file
    if not isinstance(state, dict):
        return None
    names = [name for name, _ in program.named_predictors()]
    lone = names == ["self"]  # a lone predictor saves its own fields, not predictors by name
    if ("signature" in state) if lone else all(name in state for name in names):
        return None

    def described(predictors: list[str], one: bool) -> str:
        return "one predictor" if one else f"the predictors {', '.join(predictors) or '(none)'}"

    saved = [name for name in state if name != "metadata"]
    return f"it holds {described(saved, 'signature' in state)}, this program has {described(names, lone)}"


def _whole_saved_program(path: str, allow_pickle: bool) -> dspy.Module:
    if not allow_pickle:
        raise ProgramError(
            f"{path} is a whole saved program, loaded with pickle, which runs code: "
            "pass --allow-pickle if you trust it"
        )
    try:
        program = dspy.load(path, allow_pickle=True)
    except Exception as error:
        raise ProgramError(
            f"cannot load the saved program {path}: {type(error).__name__}: {_first_line(error)}"
        ) from None
    if not isinstance(program, dspy.Module):
        raise ProgramError(f"{path} holds a {type(program).__name__}, not a dspy.Module")
    return program


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
