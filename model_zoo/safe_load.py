"""Read checkpoint files without ever running code pickled into them.

A ``.pth`` file is a pickle, and unpickling can call any Python function the file names
(``os.system``, ``builtins.exec`` ...). This module reads checkpoints in two steps:

1. ``torch.load(weights_only=True)``: torch's own restricted unpickler. Plain state dicts and
   most checkpoints load here.
2. If that refuses the file because it names other globals (checkpoints written by mmengine's
   ``Runner`` carry ``message_hub`` with mmengine ``HistoryBuffer`` objects, numpy arrays,
   optimizer and scheduler state), ``torch.load(weights_only=False, pickle_module=...)`` with a
   *restricted* pickle module: torch's own zip reader and storage handling (its
   ``UnpicklerWrapper`` subclasses our ``Unpickler`` and resolves storages before asking us),
   and a ``find_class`` that returns real objects only for :data:`ALLOWED_GLOBALS` and an inert
   :class:`Unresolved` placeholder class for every other name. A placeholder never imports the
   module it names and has no behaviour: it stores the arguments and state it is given as data.
   The tensor rebuild functions in the allow-list are wrappers that check their arguments
   (storages must be the ones torch's zip reader produced and every view must lie inside its
   storage; the tensor type of ``_rebuild_from_type_v2`` must be ``torch.Tensor`` or
   ``torch.nn.Parameter``, never a placeholder or another class) before calling torch's own
   function. The unpickler is the pure-Python one with a narrowed opcode table: setting an
   object's state (BUILD) only fills placeholders and an OrderedDict's attributes, and new
   objects (NEWOBJ) are made only from classes.

Why not mmengine's ``CheckpointLoader`` or plain ``torch.load``: both unpickle with the full
``pickle`` module, i.e. they run whatever the file names. Why not
``torch.serialization.add_safe_globals``: it would make real mmengine/numpy classes
constructible (their ``__setstate__`` runs); we need none of their contents, only the tensors.

A file that names functions a checkpoint has no reason to contain (``os.system``,
``builtins.exec``, ``subprocess.*`` ...: :func:`suspicious_globals`) is refused even though
nothing was run: it was made to execute code when loaded with plain ``torch.load``.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import pickle
import types
import warnings
import zipfile
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import torch

logger = logging.getLogger(__name__)

__all__ = ['ALLOWED_GLOBALS', 'LoadedFile', 'UnsafeCheckpoint', 'Unresolved', 'clean_text',
           'describe_bytes', 'load_checkpoint_bytes', 'suspicious_globals']


# -- text quoted into messages --------------------------------------------------------------
def clean_text(text: Any, limit: int = 300) -> str:
    """``text`` made safe to print in a one-paragraph message.

    Control and other non-printable characters (terminal escape codes such as ``\\x1b[31m``,
    bidirectional overrides) become visible escapes (``\\x1b``); newlines and tabs become spaces;
    the result is cut to ``limit`` characters.
    """
    out = []
    for ch in str(text):
        if ch in '\n\r\t':
            out.append(' ')
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f'\\x{code:02x}' if code <= 0xff else f'\\u{code:04x}')
    s = ''.join(out)
    return s if len(s) <= limit else s[:limit - 3] + '...'


def _exception_summary(e: BaseException) -> str:
    """First line of an exception, cleaned; never torch's advice about weights-only loading."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ''
    if 'weights_only' in first or 'Weights only' in first or 'weights-only' in first:
        first = ''
    return f'{type(e).__name__}: {clean_text(first, 200)}' if first else type(e).__name__


# -- the placeholder ------------------------------------------------------------------------
class Unresolved:
    """Stand-in for an object of a class (or the result of a function) this loader does not construct.

    It accepts any constructor arguments, ``__setstate__`` state, appended or added items and set
    items, and keeps them as plain data (``args``, ``kwargs``, ``state``, ``items``, ``entries``). It defines no
    other behaviour: no ``__getattr__``, no ``__call__`` (so it cannot stand in as a function), no
    ``__reduce__`` use. ``pickled_name`` is the ``module.name`` the file referred to.
    """

    __slots__ = ('args', 'kwargs', 'state', 'items', 'entries')
    pickled_name = ''

    def __new__(cls, *args: Any, **kwargs: Any) -> 'Unresolved':
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.entries = args, kwargs, None, [], []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: D107 - data set in __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def add(self, item: Any) -> None:
        self.items.append(item)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries.append((key, value))

    def __repr__(self) -> str:
        return f'<{clean_text(self.pickled_name, 120)} (not loaded)>'


class _TypeToken:
    """What ``torch.Tensor`` / ``torch.nn.Parameter`` resolve to: not the class itself (whose
    constructor would allocate whatever size the file asks for), only a name for it that
    :func:`_rebuild_from_type_v2` understands."""

    __slots__ = ('cls',)

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def __repr__(self) -> str:
        return f'<tensor type {self.cls.__name__}>'


_TENSOR_TYPES = {'Tensor': _TypeToken(torch.Tensor), 'Parameter': _TypeToken(torch.nn.Parameter)}


class UnsafeCheckpoint(pickle.UnpicklingError):
    """The file asked for something the restricted loader refuses to build."""


# -- checked tensor rebuild functions -------------------------------------------------------
def _check_storage(storage: Any) -> None:
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafeCheckpoint(f'a tensor is rebuilt from {type(storage).__name__!s}, not from a '
                               'storage stored in the file')


def _check_ints(value: Any, what: str) -> Tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise UnsafeCheckpoint(f'a tensor {what} is {type(value).__name__}, expected a tuple of ints')
    return tuple(value)


def _check_extent(storage: 'torch.storage.TypedStorage', offset: Any, size: Tuple[int, ...],
                  stride: Tuple[int, ...], dtype: Optional[torch.dtype] = None) -> None:
    """The view must lie inside the storage: ``Tensor.set_`` would otherwise grow the storage to
    whatever the file asks for (an allocation of any size) instead of failing."""
    if type(offset) is not int or offset < 0 or len(size) != len(stride) \
            or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise UnsafeCheckpoint('a tensor has a negative or malformed offset, size or stride')
    if all(n > 0 for n in size):
        itemsize = torch.empty((), dtype=dtype or storage.dtype).element_size()
        capacity = storage.nbytes() // itemsize
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= capacity:
            raise UnsafeCheckpoint(f'a tensor reaches element {last} of a storage of {capacity}')


def _check_metadata(metadata: Any) -> Optional[dict]:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, bool)
                                                 for k, v in metadata.items()):
        raise UnsafeCheckpoint('tensor metadata is not a dict of flags')
    return metadata


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """``torch._utils._rebuild_tensor_v2`` with checked arguments and no backward hooks."""
    _check_storage(storage)
    size, stride = _check_ints(size, 'size'), _check_ints(stride, 'stride')
    _check_extent(storage, storage_offset, size, stride)
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, bool(requires_grad),
                                           OrderedDict(), _check_metadata(metadata))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    """``torch._utils._rebuild_tensor_v3`` with checked arguments and no backward hooks."""
    _check_storage(storage)
    if not isinstance(dtype, torch.dtype):
        raise UnsafeCheckpoint('a tensor dtype is not a torch dtype')
    size, stride = _check_ints(size, 'size'), _check_ints(stride, 'stride')
    _check_extent(storage, storage_offset, size, stride, dtype)
    return torch._utils._rebuild_tensor_v3(storage, storage_offset, size, stride, bool(requires_grad),
                                           OrderedDict(), dtype, _check_metadata(metadata))


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """``torch._utils._rebuild_parameter`` for a tensor, without backward hooks."""
    if type(data) is not torch.Tensor:
        raise UnsafeCheckpoint(f'a parameter wraps {type(data).__name__}, not a tensor')
    return torch.nn.Parameter(data, bool(requires_grad))


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    """``torch._utils._rebuild_parameter_with_state`` without the Python attributes (not weights)."""
    return _rebuild_parameter(data, requires_grad, backward_hooks)


_REBUILD_FUNCTIONS = (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
                      _rebuild_parameter_with_state)


def _rebuild_from_type_v2(func, new_type, args, state):
    """``torch._tensor._rebuild_from_type_v2`` (tensors with Python attributes or of a subclass).

    ``func`` must be one of the checked rebuild functions and ``new_type`` must name
    ``torch.Tensor`` or ``torch.nn.Parameter``; a tensor subclass or any other class named by the
    file is refused. The Python attributes in ``state`` are dropped: they are not weights.
    """
    if not any(func is f for f in _REBUILD_FUNCTIONS):
        raise UnsafeCheckpoint(f'a tensor is to be rebuilt by {func!r}, which is not a tensor '
                               'rebuild function')
    if not isinstance(new_type, _TypeToken):
        name = new_type.pickled_name if isinstance(new_type, type) and issubclass(new_type, Unresolved) \
            else type(new_type).__name__
        raise UnsafeCheckpoint(f'a tensor is to be rebuilt as type {clean_text(name, 120)}, not as '
                               'torch.Tensor or torch.nn.Parameter')
    if not isinstance(args, tuple):
        raise UnsafeCheckpoint('tensor rebuild arguments are not a tuple')
    ret = func(*args)
    if new_type.cls is torch.nn.Parameter and type(ret) is torch.Tensor:
        ret = torch.nn.Parameter(ret, ret.requires_grad)
    return ret


#: The globals the restricted unpickler constructs for real, as ``(module, name) -> object``.
#: Everything else becomes an :class:`Unresolved` placeholder class.
#:
#: * ``torch._utils._rebuild_tensor_v2`` (every tensor ``torch.save`` writes),
#:   ``_rebuild_tensor_v3`` (dtypes without a typed storage class), ``_rebuild_parameter`` and
#:   ``_rebuild_parameter_with_state`` (``nn.Parameter`` objects, e.g. a model pickled whole or
#:   optimizer state keyed by parameters) and ``torch._tensor._rebuild_from_type_v2`` (tensors
#:   carrying Python attributes): as the checked wrappers above.
#: * ``torch.Tensor`` and ``torch.nn.parameter.Parameter``: as type tokens that only
#:   ``_rebuild_from_type_v2`` accepts.
#: * ``collections.OrderedDict``: the container of every ``state_dict()``.
#: * ``torch.Size``, ``torch.device`` and every ``torch.<dtype>``: plain values with no side
#:   effects, used in metadata and by the v3 rebuild function.
#:
#: * ``torch.UntypedStorage``: the storage type of the dtypes ``_rebuild_tensor_v3`` serves
#:   (uint16/32/64, float8, complex32 ...); torch's ``persistent_load`` compares it by identity.
#:
#: Typed storages (``torch.FloatStorage`` ...) never reach this table: torch's ``UnpicklerWrapper``
#: maps them to its ``StorageType`` before calling ``find_class``; the bytes of every storage come
#: from the zip archive through torch's ``persistent_load``. Quantized, sparse, nested and numpy-backed
#: tensors are not in the list: segmentation checkpoints do not hold them, and they stay
#: placeholders (a state dict holding one is refused as holding a non-tensor).
ALLOWED_GLOBALS: Dict[Tuple[str, str], Any] = {
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor_v3'): _rebuild_tensor_v3,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter_with_state,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,
    ('torch.tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,   # name before torch 1.9
    ('torch', 'Tensor'): _TENSOR_TYPES['Tensor'],
    ('torch._tensor', 'Tensor'): _TENSOR_TYPES['Tensor'],
    ('torch.nn.parameter', 'Parameter'): _TENSOR_TYPES['Parameter'],
    ('torch', 'UntypedStorage'): torch.UntypedStorage,
    ('torch.storage', 'UntypedStorage'): torch.UntypedStorage,
    ('collections', 'OrderedDict'): OrderedDict,
    ('torch', 'Size'): torch.Size,
    ('torch', 'device'): torch.device,
}
ALLOWED_GLOBALS.update({('torch', name): value for name, value in vars(torch).items()
                        if isinstance(value, torch.dtype)})

#: Modules whose functions run code, touch the system or import other code. A checkpoint naming
#: one of them was made to do that when unpickled; nothing it names is ever run here, but such a
#: file is refused (see :func:`suspicious_globals`).
_SUSPICIOUS_MODULES = frozenset({
    'os', 'posix', 'nt', 'subprocess', 'sys', 'builtins', '__builtin__', 'importlib', 'runpy',
    'shutil', 'socket', 'pty', 'code', 'codeop', 'ctypes', 'pickle', '_pickle', 'marshal',
    'webbrowser', 'commands', 'multiprocessing', 'asyncio', 'types', 'operator', 'functools',
    'pydoc', 'timeit', 'platform', 'cProfile', 'profile', 'pdb', 'trace', 'bdb', 'tempfile',
    'io', '_io', 'urllib', 'http', 'ftplib', 'smtplib', 'telnetlib', 'shelve', 'dill',
    'torch.hub', 'torch.jit', 'torch.ops', 'torch.package', 'torch.serialization',
    'numpy.testing', 'numpy.distutils', 'numpy.f2py',
})
#: ``builtins`` names that ordinary pickles use: plain values (sets, bytes, slices ...) and
#: ``getattr``, the way pickle stores a bound method (``getattr(obj, 'min')``: checkpoints written
#: by mmengine's Runner hold HistoryBuffer's statistics methods so). They stay placeholders like
#: every other name; their presence alone does not make a file suspicious (a ``getattr`` attack
#: needs a module object, i.e. ``__import__``, ``importlib`` or ``sys``, which are flagged).
_PLAIN_BUILTINS = frozenset({'set', 'frozenset', 'bytearray', 'bytes', 'complex', 'slice', 'range',
                             'int', 'float', 'str', 'bool', 'list', 'tuple', 'dict', 'object',
                             'getattr'})


def suspicious_globals(names: Set[str]) -> List[str]:
    """The ``module.name`` entries of ``names`` that a checkpoint has no reason to contain."""
    out = []
    for full in sorted(names):
        module, _, name = full.rpartition('.')
        top = module.split('.')[0]
        if module in ('builtins', '__builtin__') and name in _PLAIN_BUILTINS:
            continue
        if module in _SUSPICIOUS_MODULES or top in _SUSPICIOUS_MODULES:
            out.append(full)
    return out


def _restricted_pickle_module(seen: Set[str]) -> types.ModuleType:
    """A stand-in for the ``pickle`` module that ``torch.load`` uses (``Unpickler`` and ``load``).

    Built per load so that ``seen`` collects the globals this file named and got placeholders for.
    """
    placeholders: Dict[Tuple[str, str], type] = {}

    # The pure-Python unpickler (pickle._Unpickler), not the C one: its opcode table can be
    # narrowed. BUILD (set an object's state) is the one opcode besides REDUCE/NEWOBJ that calls
    # into existing objects (``__setstate__``, ``setattr``); here it only fills placeholders and
    # the attribute dict of an OrderedDict (state dicts keep ``_metadata`` there), so a file cannot
    # change the allowed functions (``__defaults__`` ...) or call ``Tensor.__setstate__``.
    class RestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001
        """``find_class`` resolves :data:`ALLOWED_GLOBALS` and gives placeholders for the rest."""

        dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

        def find_class(self, module: str, name: str) -> Any:  # noqa: D102
            key = (str(module), str(name))
            if key[0] == '__builtin__':   # Python 2 spelling, which protocol-2 pickles keep using
                key = ('builtins', key[1])
            if key in ALLOWED_GLOBALS:
                return ALLOWED_GLOBALS[key]
            if key not in placeholders:
                # type() with our own base and fixed attributes: the file's strings are only data
                placeholders[key] = type('Unresolved', (Unresolved,),
                                         {'__slots__': (), 'pickled_name': f'{key[0]}.{key[1]}'})
            seen.add(f'{key[0]}.{key[1]}')
            return placeholders[key]

        def load_build(self) -> None:
            state = self.stack.pop()
            inst = self.stack[-1]
            if isinstance(inst, Unresolved):
                inst.__setstate__(state)
            elif type(inst) is OrderedDict and isinstance(state, dict) \
                    and all(isinstance(k, str) for k in state):
                inst.__dict__.update(state)
            else:
                raise UnsafeCheckpoint(f'the file sets the state of a {type(inst).__name__}, which this '
                                       'loader does not do')
        dispatch[pickle.BUILD[0]] = load_build

        def load_newobj(self) -> None:
            args = self.stack.pop()
            cls = self.stack.pop()
            if not isinstance(cls, type) or not isinstance(args, tuple):
                raise UnsafeCheckpoint('the file creates an object of something that is not a class')
            self.append(cls.__new__(cls, *args))
        dispatch[pickle.NEWOBJ[0]] = load_newobj

        def load_newobj_ex(self) -> None:
            kwargs = self.stack.pop()
            args = self.stack.pop()
            cls = self.stack.pop()
            if not isinstance(cls, type) or not isinstance(args, tuple) or not isinstance(kwargs, dict):
                raise UnsafeCheckpoint('the file creates an object of something that is not a class')
            self.append(cls.__new__(cls, *args, **kwargs))
        dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()

    module = types.ModuleType('segbench_restricted_pickle')
    module.Unpickler = RestrictedUnpickler
    module.load = load
    module.UnpicklingError = pickle.UnpicklingError
    return module


# -- file formats ---------------------------------------------------------------------------
_ZIP_MAGIC = b'PK\x03\x04'


def describe_bytes(data: bytes) -> Optional[str]:
    """Why ``data`` cannot be a PyTorch checkpoint, or None if its format looks right.

    Recognises an empty file, a truncated or foreign zip archive, a TorchScript archive, a Git LFS
    pointer, an HTML page and other text.
    """
    if not data:
        return 'the file is empty (0 bytes): an interrupted download or copy'
    if data.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            return (f'the file is a truncated or damaged zip archive ({_exception_summary(e)}): '
                    'an interrupted download or copy')
        records = {n.split('/', 1)[-1] for n in names}
        if 'constants.pkl' in records:
            return ('the file is a TorchScript archive (torch.jit.save), which holds code, not a '
                    'state dict')
        if 'data.pkl' not in records:
            return 'the file is a zip archive but not one written by torch.save (it has no data.pkl)'
        return None
    if data[:1] == b'\x80':          # pickle protocol 2+: torch's legacy (pre-1.6) format
        return None
    head = data[:200]
    if head.startswith(b'version https://git-lfs'):
        return ('the file is a Git LFS pointer, not the weights: fetch them with `git lfs pull` or '
                'download the file itself')
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        text = None
    if text is not None and sum(ch.isprintable() or ch in '\n\r\t' for ch in text) >= 0.95 * len(text):
        what = 'an HTML page (an error or login page instead of the file?)' \
            if text.lstrip().lower().startswith(('<!doctype', '<html')) else 'a text file'
        return f'the file is {what}, starting with "{clean_text(text, 60)}"'
    return f'the file is not a PyTorch checkpoint (first bytes {head[:8].hex()})'


@dataclasses.dataclass
class LoadedFile:
    """What :func:`load_checkpoint_bytes` read.

    Attributes:
        obj: The unpickled object (placeholders stand for what was not constructed).
        restricted: True if the restricted unpickler was needed (weights-only loading refused it).
        unresolved: ``module.name`` of every global that became a placeholder.
    """

    obj: Any
    restricted: bool = False
    unresolved: Set[str] = dataclasses.field(default_factory=set)


def load_checkpoint_bytes(data: bytes, fail: Callable[[str], Exception]) -> LoadedFile:
    """Unpickle a checkpoint's bytes without running pickled code.

    Args:
        data: The file's content (read once, so that its hash is the hash of what is loaded).
        fail: Makes the exception to raise from a reason (a sentence fragment).

    Returns:
        The loaded object and what the restricted unpickler left unresolved.

    Raises:
        The exception ``fail`` builds: for a file that is not a checkpoint or cannot be read.
    """
    problem = describe_bytes(data)
    if problem:
        raise fail(problem)
    try:
        with warnings.catch_warnings():   # torch's notes on protocols and storages: not the user's concern
            warnings.simplefilter('ignore')
            return LoadedFile(torch.load(io.BytesIO(data), map_location='cpu', weights_only=True))
    except pickle.UnpicklingError as e:   # weights-only refused a global or opcode: try inert loading
        logger.debug('weights-only loading refused the file (%s); using the restricted unpickler',
                     _exception_summary(e))
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError ... for broken files
        raise fail(f'it cannot be read ({_exception_summary(e)})') from None
    seen: Set[str] = set()
    error = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            obj = torch.load(io.BytesIO(data), map_location='cpu', weights_only=False,
                             pickle_module=_restricted_pickle_module(seen))
    except UnsafeCheckpoint as e:
        error = f'it asks for something this loader does not build: {clean_text(e, 200)}'
    except Exception as e:  # noqa: BLE001
        error = f'it cannot be read ({_exception_summary(e)})'
    bad = suspicious_globals(seen)
    if bad:   # checked first: it is the more important thing to know about the file
        shown = ', '.join(clean_text(n, 80) for n in bad[:8]) + (f' ... ({len(bad)} in all)' if len(bad) > 8 else '')
        raise fail(f'it names {shown}, which a checkpoint has no reason to contain: it was made to run '
                   'code when unpickled. Nothing in it was run (this loader never executes pickled '
                   'code), but the file is not used; get the weights from a source you trust')
    if error:
        raise fail(error)
    return LoadedFile(obj, restricted=True, unresolved=seen)
