"""Cheap stand-ins for modules that are slow to import: keeps ``import dtls_ossl`` fast.

* :class:`Record` replaces ``@dataclass(frozen=True)`` (:mod:`dataclasses` imports
  :mod:`inspect`: ~6 ms);
* :func:`final` replaces :func:`typing.final` and ``TYPE_CHECKING`` replaces
  :data:`typing.TYPE_CHECKING` (mypy recognises the name), so :mod:`typing` is not needed at
  run time (~2.5 ms on an interpreter that has not imported it yet);
* :func:`debug_logger` answers "is DEBUG logging on?" without importing :mod:`logging` (~5 ms).

A :class:`Record` subclass declares its fields three times, on purpose, so that nothing has to
be generated at import time and mypy needs no plugin beyond ``dataclass_transform``:

* ``__slots__`` (or class attributes with defaults, for a class that keeps a ``__dict__``);
* ``__match_args__``: the public fields in constructor order, which :class:`Record` uses for
  ``repr()``, ``==``, ``hash()``, pickling and :meth:`Record._replace`;
* an explicit ``__init__`` that stores each field with ``object.__setattr__``.

Behaviour matches ``@dataclass(frozen=True)``: ``ClassName(field=value, ...)`` repr, equality
only with the same class, hash of the field tuple, and assignment or deletion raising
:class:`FrozenInstanceError` (an :class:`AttributeError`).
"""

from __future__ import annotations

import sys
from operator import attrgetter  # already imported by enum, hence by Python's startup

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any, ClassVar, final

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


@dataclass_transform(frozen_default=True)
class Record:
    """Base of the frozen value classes: repr, eq, hash and immutability from ``__match_args__``.

    Subclasses must list every public field in ``__match_args__``, in ``__init__`` order.
    """

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()
    _values: ClassVar[staticmethod[[Any], tuple[Any, ...]]]
    "Return the tuple of an instance's field values (built per class, in C when possible)."

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Build ``_values``; check that every public slot is a field, so none is missed."""
        super().__init_subclass__(**kwargs)
        fields = cls.__match_args__
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if not name.startswith("_") and name not in fields:
                    raise TypeError(f"{cls.__qualname__}: slot {name!r} is not in __match_args__")
        if len(fields) == 1:
            get_one = attrgetter(fields[0])
            cls._values = staticmethod(lambda obj: (get_one(obj),))
        else:  # attrgetter of two or more names returns a tuple
            cls._values = staticmethod(attrgetter(*fields) if fields else lambda obj: ())

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
