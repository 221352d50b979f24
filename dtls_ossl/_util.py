"""Cheap stand-ins for modules that are slow to import: keeps ``import dtls_ossl`` fast.

* :class:`Record` replaces ``@dataclass(frozen=True)`` (:mod:`dataclasses` imports
  :mod:`inspect`: ~6 ms);
* :func:`final` replaces :func:`typing.final` and ``TYPE_CHECKING`` replaces
  :data:`typing.TYPE_CHECKING` (mypy recognises the name), so :mod:`typing` is not needed at
  run time (~2.5 ms on an interpreter that has not imported it yet);
* :func:`debug_logger` answers "is DEBUG logging on?" without importing :mod:`logging` (~5 ms).

A :class:`Record` subclass declares each field once, as a class annotation (with an optional
default), in constructor order. The metaclass derives the rest when the class is created:

* ``__slots__`` (no ``__dict__``), plus a slot for each private (``_name``) annotation, which is
  state rather than a field: out of the constructor, ``repr()``, ``==``, ``hash()`` and pickling;
* ``__match_args__``: the public fields, a base record's first;
* ``__init__``, generated once per class (as :mod:`dataclasses` does, but without its import
  cost), storing each argument through its slot descriptor, then calling the class's
  ``_validate()`` hook if it has one (which may normalise fields with ``object.__setattr__``);
* ``_unchecked(*values)``, the same construction without the hook, for values already known
  to be valid (a hot path).

Behaviour matches ``@dataclass(frozen=True, slots=True)``: ``ClassName(field=value, ...)`` repr,
equality only with the same class, hash of the field tuple, assignment or deletion raising
:class:`FrozenInstanceError` (an :class:`AttributeError`), and pickling by constructor call.
"""

from __future__ import annotations

import sys
from operator import attrgetter  # already imported by enum, hence by Python's startup
from types import MemberDescriptorType  # likewise

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any, ClassVar, Literal, final

    from typing_extensions import Self, dataclass_transform
else:

    def dataclass_transform(**_kwargs: Any) -> Callable[[type], type]:
        return lambda cls: cls

    def final(cls: type) -> type:
        """Runtime twin of :func:`typing.final`, without importing :mod:`typing`."""
        cls.__final__ = True
        return cls


__all__ = [
    "TYPE_CHECKING",
    "FrozenInstanceError",
    "Record",
    "debug_logger",
    "final",
    "lazy_attributes",
    "private",
]


def lazy_attributes(
    namespace: dict[str, Any], lazy: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Return a module's PEP 562 ``__getattr__`` and ``__dir__``; *namespace* is its globals().

    *lazy* maps each name loaded on first access to the module that defines it, or a
    subpackage's own name to itself (``"aio": "dtls_ossl.aio"``); the value is then stored in
    *namespace*, so ``__getattr__`` runs once per name. ``__dir__`` lists ``__all__`` only: the
    public names, not the helpers and submodules that importing leaves in the namespace.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if module == f"{package}.{name}":
            # A submodule: `from package import name` would ask this function again.
            __import__(module)
            value = sys.modules[module]
        else:
            value = getattr(__import__(module, fromlist=[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace["__all__"])

    return __getattr__, __dir__


def debug_logger(name: str) -> logging.Logger | None:
    """Return the logger ``name`` if it has DEBUG enabled, else None.

    Use as ``log = debug_logger(__name__)`` then ``if log is not None: log.debug(...)``. If no
    one has imported :mod:`logging`, no handler or level can have been configured: DEBUG is off
    and :mod:`logging` is not imported just to find that out.
    """
    module = sys.modules.get("logging")
    if module is None:
        return None
    log: logging.Logger = module.getLogger(name)
    return log if log.isEnabledFor(module.DEBUG) else None


class FrozenInstanceError(AttributeError):
    """A field of an immutable record was assigned or deleted (as in :mod:`dataclasses`)."""


def private(*, init: Literal[False] = False, default: None = None) -> Any:
    """Mark a private annotation as state, not a constructor argument (for type checkers).

    ``_state: T = private(default=None)`` in a :class:`Record` body: the metaclass makes every
    ``_name`` annotation a private slot anyway (set it in ``_validate``); this tells mypy's
    ``dataclass_transform`` the same. The arguments exist for the type checker only.
    """
    return _PRIVATE


_PRIVATE = object()


def _is_class_var(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return isinstance(text, str) and text.startswith(("ClassVar", "typing.ClassVar"))


class _RecordMeta(type):
    """Derive ``__slots__``, ``__match_args__`` and the constructors from the annotations."""

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> _RecordMeta:
        inherited: tuple[str, ...] = ()
        defaults: dict[str, Any] = {}
        for base in reversed(bases):
            inherited += tuple(f for f in getattr(base, "__match_args__", ()) if f not in inherited)
            defaults.update(getattr(base, "_defaults", {}))
        own: list[str] = []
        slots = list(namespace.get("__slots__", ()))
        for field, annotation in namespace.get("__annotations__", {}).items():
            if _is_class_var(annotation):
                continue
            if field.startswith("_"):
                namespace.pop(field, None)  # a private() marker, or a default nobody reads
            else:
                if field in inherited:
                    raise TypeError(f"{name}: field {field!r} is already a field of a base")
                own.append(field)
                if field in namespace:
                    defaults[field] = namespace.pop(field)
            slots.append(field)
        fields = inherited + tuple(own)
        namespace["__slots__"] = tuple(slots)
        namespace["__match_args__"] = fields
        namespace["_defaults"] = defaults
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        _defer_constructors(cls, fields, defaults, own_init="__init__" in namespace)
        return cls


def _defer_constructors(
    cls: Any, fields: tuple[str, ...], defaults: dict[str, Any], *, own_init: bool
) -> None:
    """Install stand-ins that generate the constructors on first use, not at import.

    Compiling a class's ``__init__`` costs about as much as importing a small module; most
    records are never built in a given process, so each pays that once, on its first build.
    """

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        _build_constructors(cls, fields, defaults, own_init=own_init)
        cls.__init__(self, *args, **kwargs)

    def _unchecked(*args: Any, **kwargs: Any) -> Any:
        _build_constructors(cls, fields, defaults, own_init=own_init)
        return cls._unchecked(*args, **kwargs)

    if not own_init:
        cls.__init__ = __init__
    cls._unchecked = staticmethod(_unchecked)
    if len(fields) == 1:
        get_one = attrgetter(fields[0])
        cls._values = staticmethod(lambda obj: (get_one(obj),))
    else:  # attrgetter of two or more names returns a tuple
        cls._values = staticmethod(attrgetter(*fields) if fields else lambda obj: ())


def _build_constructors(
    cls: Any, fields: tuple[str, ...], defaults: dict[str, Any], *, own_init: bool
) -> None:
    """Generate ``__init__`` and ``_unchecked`` for *cls* (once, on its first construction).

    Each field is stored through its slot descriptor's ``__set__``, which bypasses the frozen
    ``__setattr__`` and is faster than ``object.__setattr__(self, name, value)``; once the
    compiled module is loaded, all of them at once by its ``record_fill``.
    """
    names = {"_new": object.__new__, "cls": cls}
    params = []
    stores = []
    seen_default = False
    descriptors = []
    for i, field in enumerate(fields):
        descriptors.append(getattr(cls, field))
        names[f"_set{i}"] = descriptors[-1].__set__
        if field in defaults:
            names[f"_d{i}"] = defaults[field]
            params.append(f"{field}=_d{i}")
            seen_default = True
        elif seen_default:
            raise TypeError(f"{cls.__qualname__}: field {field!r} without a default follows one")
        else:
            params.append(field)
        stores.append(f"    _set{i}(self, {field})")
    # The compiled module's record_fill stores every field in one call (_cffi_src/fastpath.c);
    # it exists once dtls_ossl._binding was imported, as it is before any connection is made.
    fill = getattr(sys.modules.get("dtls_ossl._openssl"), "record_fill", None)
    if fill is not None and fields and all(type(d) is MemberDescriptorType for d in descriptors):
        names["_fill"], names["_slots"] = fill, tuple(descriptors)
        stores = [f"    _fill(self, _slots, {', '.join(fields)})"]
    validate = "    self._validate()\n" if hasattr(cls, "_validate") else ""
    body = "\n".join(stores) or "    pass"
    source = (
        f"def __init__(self, {', '.join(params)}):\n{body}\n{validate}"
        f"def _unchecked({', '.join(params)}):\n    self = _new(cls)\n{body}\n    return self\n"
    )
    exec(source, names)  # the source is built from identifiers, never from input
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = f"Build a {cls.__name__} from its fields."
    if not own_init:
        cls.__init__ = init
    cls._unchecked = staticmethod(names["_unchecked"])


@dataclass_transform(frozen_default=True, field_specifiers=(private,))
class Record(metaclass=_RecordMeta):
    """Base of the frozen value classes: declare the fields once, as annotations.

    Define ``_validate(self)`` to check (and normalise, with ``object.__setattr__``) the
    fields after the generated ``__init__`` stored them.
    """

    __match_args__: ClassVar[tuple[str, ...]] = ()
    _values: ClassVar[staticmethod[[Any], tuple[Any, ...]]]
    "Return the tuple of an instance's field values (built per class, in C when possible)."
    _defaults: ClassVar[dict[str, Any]]

    if TYPE_CHECKING:

        @classmethod
        def _unchecked(cls, *values: Any) -> Self:
            """Build an instance from valid field values, positionally, skipping ``_validate``."""

    def __repr__(self) -> str:
        fields = ", ".join([f"{name}={getattr(self, name)!r}" for name in self.__match_args__])
        return f"{self.__class__.__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        values = self._values
        return values(self) == values(other)

    def __hash__(self) -> int:
        return hash(self._values(self))

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Callable[..., Self], tuple[Any, ...]]:
        # The default slot-state protocol would restore fields with setattr, which is frozen.
        return (self.__class__, self._values(self))

    def _replace(self, **changes: Any) -> Self:
        """Return a copy with some fields changed; the constructor validates it again."""
        for name in changes:
            if name not in self.__match_args__:
                raise TypeError(f"{self.__class__.__qualname__} has no field {name!r}")
        values = {name: getattr(self, name) for name in self.__match_args__}
        values.update(changes)
        return self.__class__(**values)
