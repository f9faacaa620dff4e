"""``ImportWatch``: run a callback right after a module is first imported, by anyone (user
code, a library, the runner itself), before the importer goes on; at once if it is imported
already.  The runner imports asyncio and logging this way only when something uses them
(``_asyncio_mode``), which keeps them out of the start-up time and of an idle interpreter's
memory."""

import sys


class _Notifying(object):
    """The module's own loader, and the watch's callbacks once it executed the module."""

    def __init__(self, loader, watch, name):
        self._loader = loader
        self._watch = watch
        self._name = name

    def __getattr__(self, name):  # the rest of the loader's API (get_code, is_package, ...)
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = loader
        loader.exec_module(module)
        self._watch._imported(self._name, module)


class ImportWatch(object):
    """A finder first in ``sys.meta_path`` while callbacks wait; it finds nothing itself."""

    def __init__(self, on_error):
        self._waiting = {}  # module name -> [callback]
        self._on_error = on_error  # (name, exception): a callback failed (the import still works)

    def when_imported(self, name, callback):
        module = sys.modules.get(name)
        if module is not None:
            self._call(name, callback, module)
            return
        self._waiting.setdefault(name, []).append(callback)
        if self not in sys.meta_path:
            # A new list, not an insert: another thread importing right now iterates the
            # old one, and a list changed under its iteration skips finders.
            sys.meta_path = [self] + sys.meta_path

    def cancel(self):
        """Forget every waiting callback and leave ``sys.meta_path`` (a new list: see above)."""
        self._waiting.clear()
        if self in sys.meta_path:
            sys.meta_path = [finder for finder in sys.meta_path if finder is not self]

    def find_spec(self, name, path=None, target=None):
        if name not in self._waiting:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            if find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # a namespace package or an old-style loader: not watched
        spec.loader = _Notifying(spec.loader, self, name)
        return spec

    def _imported(self, name, module):
        # Callbacks first: until they ran, the watch stays in place.  A KeyboardInterrupt
        # from one (an interrupt the runner deferred while it set up) leaves the import
        # with it; the watch is done with the name all the same.
        try:
            for callback in self._waiting.get(name, ()):
                self._call(name, callback, module)
        finally:
            self._waiting.pop(name, None)
            if not self._waiting:
                self.cancel()

    def _call(self, name, callback, module):
        try:
            callback(module)
        except Exception as e:  # the importer must get its module all the same
            self._on_error(name, e)
