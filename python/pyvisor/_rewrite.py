"""The AST rewrite behind ``_compile.compile_code``: host code parsed, checked and wrapped
as the body of ``def __pyvisor_code__()`` (the rules are in ``_compile``'s docstring).

Imported at the first compile, not at start-up: ``ast`` (and the ``enum`` it imports) cost
start-up time and memory that an interpreter which only runs calls never needs."""

import ast
import sys
import types

_WRAPPER = "__pyvisor_code__"
_STAR = "__pyvisor_star__"
_QUALNAME_PREFIX = _WRAPPER + ".<locals>."
_HAS_QUALNAME = sys.version_info >= (3, 11)


def compile_wrapped(source, filename, line):
    """The wrapper's code object for ``source`` (first line: line ``line`` of ``filename``),
    whether it awaits, whether it has ``import *``: ``(code, is_async, star)``.

    Raises SyntaxError (or a subclass) with ``filename``/``lineno``/``text`` filled in.
    """
    offset = line - 1
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError as e:
        _shift_error(e, offset, source, filename)
        raise
    except ValueError as e:  # null bytes in the source (a SyntaxError from 3.12 on)
        raise SyntaxError(str(e), (filename, line, 1, None))
    if offset:
        _shift_lines(tree, offset)
    body = tree.body
    futures = []
    # A docstring may precede __future__ imports; both stay where the compiler wants them.
    start = 1 if body and _is_docstring(body[0]) else 0
    while start < len(body) and isinstance(body[start], ast.ImportFrom) and body[start].module == "__future__":
        futures.append(body.pop(start))
    scope = _TopLevel(filename, source, offset)
    try:
        body = [scope.visit(stmt) for stmt in body]
    except SyntaxError as e:
        _fill_error_text(e, source, offset)
        raise
    module = ast.Module(body=futures + [_wrapper(body, scope, line)], type_ignores=[])
    try:
        module_code = compile(module, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        _fill_error_text(e, source, offset)
        raise
    for const in module_code.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == _WRAPPER:
            code = _fix_qualnames(const)
            break
    else:  # pragma: no cover - the wrapper is always there
        raise SystemError("pyvisor: compiled wrapper not found")
    if _HAS_QUALNAME:
        code = code.replace(co_name="<module>", co_qualname="<module>")
    else:
        code = code.replace(co_name="<module>")
    return code, scope.is_async, scope.star


def _is_docstring(stmt):
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _wrapper(body, scope, line):
    # Parse a template instead of building FunctionDef by hand: the node's fields differ
    # across versions (type_params in 3.12+), the parser always fills them correctly.
    params = "%s=None" % _STAR if scope.star else ""
    template = "%sdef %s(%s):\n    pass\n" % ("async " if scope.is_async else "", _WRAPPER, params)
    func = ast.parse(template).body[0]
    # The wrapper's own nodes sit on the code's first line, so nothing points before it.
    first = body[0].lineno if body else line
    for node in ast.walk(func):
        _locate(node, first)
    prologue = []
    if scope.names:
        prologue.append(_locate(ast.Global(names=sorted(scope.names)), first))
    func.body = prologue + body or [_locate(ast.Pass(), first)]
    return ast.fix_missing_locations(func)  # nodes made by the rewrites inherit locations


def _locate(node, lineno):
    if "lineno" in node._attributes:
        node.lineno = lineno
        node.col_offset = 0
        if "end_lineno" in node._attributes:
            node.end_lineno = lineno
            node.end_col_offset = 0
    return node


def _shift_lines(tree, offset):
    # ast.increment_lineno in 3.8 leaves end_lineno alone; do both everywhere.
    for node in ast.walk(tree):
        if "lineno" in node._attributes:
            lineno = getattr(node, "lineno", None)
            if lineno is not None:
                node.lineno = lineno + offset
            end = getattr(node, "end_lineno", None)
            if end is not None:
                node.end_lineno = end + offset


def _shift_error(e, offset, source, filename):
    # Errors from ast.parse count from the code's first line; make them count from ``line``.
    if e.filename is None:
        e.filename = filename
    if offset and isinstance(e.lineno, int):
        e.lineno += offset
        end = getattr(e, "end_lineno", None)
        if isinstance(end, int):
            e.end_lineno = end + offset
    _fill_error_text(e, source, offset)


def _fill_error_text(e, source, offset):
    # Errors raised while compiling an AST carry no source text: supply it for the caret.
    if e.text is None and isinstance(e.lineno, int):
        lines = source.splitlines()
        index = e.lineno - offset - 1
        if 0 <= index < len(lines):
            e.text = lines[index] + "\n"


def _fix_qualnames(code):
    # Lambdas and comprehensions at top level would be named "__pyvisor_code__.<locals>.x";
    # strip that prefix from qualname constants (<= 3.10) and co_qualname (3.11+).
    consts = []
    changed = False
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            new = _fix_qualnames(const)
        elif isinstance(const, str) and _QUALNAME_PREFIX in const:
            new = const.split(_QUALNAME_PREFIX, 1)[1]
        else:
            new = const
        changed = changed or new is not const
        consts.append(new)
    if changed:
        code = code.replace(co_consts=tuple(consts))
    if _HAS_QUALNAME and _QUALNAME_PREFIX in code.co_qualname:
        code = code.replace(co_qualname=code.co_qualname.split(_QUALNAME_PREFIX, 1)[1])
    return code


class _TopLevel(ast.NodeTransformer):
    """Walks the top-level scope: collects bindings, detects await, applies the rewrites.

    Nested function, lambda and class bodies are separate scopes and are not entered; their
    decorators, defaults, annotations and bases are evaluated at top level and are.
    """

    def __init__(self, filename, source, offset):
        self.names = set()
        self.is_async = False
        self.star = False
        self._filename = filename
        self._source = source
        self._offset = offset

    def _error(self, message, node):
        lines = self._source.splitlines()
        index = node.lineno - self._offset - 1
        text = lines[index] + "\n" if 0 <= index < len(lines) else None
        return SyntaxError(message, (self._filename, node.lineno, node.col_offset + 1, text))

    # -- scope boundaries -------------------------------------------------------------

    def _visit_function(self, node):
        self.names.add(node.name)
        for expr in node.decorator_list:
            self.visit(expr)
        self._visit_arguments(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        return node

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def _visit_arguments(self, args):
        for expr in list(args.defaults) + [d for d in args.kw_defaults if d is not None]:
            self.visit(expr)
        every = list(getattr(args, "posonlyargs", [])) + list(args.args) + list(args.kwonlyargs)
        every += [a for a in (args.vararg, args.kwarg) if a is not None]
        for arg in every:
            if arg.annotation is not None:
                self.visit(arg.annotation)

    def visit_Lambda(self, node):
        self._visit_arguments(node.args)
        return node

    def visit_ClassDef(self, node):
        self.names.add(node.name)
        for expr in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(expr)
        return node

    def _visit_comprehension(self, node):
        # Iteration targets are local to the comprehension; walrus targets inside bind here.
        for field in ("elt", "key", "value"):
            child = getattr(node, field, None)
            if child is not None:
                self.visit(child)
        for gen in node.generators:
            if gen.is_async:
                self.is_async = True
            self.visit(gen.iter)
            for cond in gen.ifs:
                self.visit(cond)
        return node

    visit_ListComp = _visit_comprehension
    visit_SetComp = _visit_comprehension
    visit_DictComp = _visit_comprehension
    visit_GeneratorExp = _visit_comprehension

    # -- bindings ---------------------------------------------------------------------

    def visit_Name(self, node):
        if not isinstance(node.ctx, ast.Load):
            self.names.add(node.id)
        return node

    def visit_NamedExpr(self, node):
        self.names.add(node.target.id)
        self.visit(node.value)
        return node

    def visit_Import(self, node):
        for alias in node.names:
            self.names.add(alias.asname or alias.name.split(".", 1)[0])
        return node

    def visit_ImportFrom(self, node):
        if any(alias.name == "*" for alias in node.names):
            self.star = True
            call = ast.Call(
                func=ast.Name(id=_STAR, ctx=ast.Load()),
                args=[ast.Constant(value=node.module or ""), ast.Constant(value=node.level or 0)],
                keywords=[],
            )
            return ast.copy_location(ast.Expr(value=ast.copy_location(call, node)), node)
        for alias in node.names:
            self.names.add(alias.asname or alias.name)
        return node

    def visit_ExceptHandler(self, node):
        if node.name:
            self.names.add(node.name)
        return self.generic_visit(node)

    def visit_Global(self, node):
        self.names.update(node.names)
        return ast.copy_location(ast.Pass(), node)

    def visit_Nonlocal(self, node):
        raise self._error("nonlocal declaration not allowed at module level", node)

    def visit_AnnAssign(self, node):
        if node.value is None:
            if isinstance(node.target, ast.Name):
                return ast.copy_location(ast.Pass(), node)
            return self.generic_visit(node)
        assign = ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)
        return self.generic_visit(assign)

    # match statement capture names (3.10+; the methods are simply unused before)
    def visit_MatchAs(self, node):
        if node.name:
            self.names.add(node.name)
        return self.generic_visit(node)

    def visit_MatchStar(self, node):
        if node.name:
            self.names.add(node.name)
        return node

    def visit_MatchMapping(self, node):
        if node.rest:
            self.names.add(node.rest)
        return self.generic_visit(node)

    # -- async / generators -----------------------------------------------------------

    def visit_Await(self, node):
        self.is_async = True
        return self.generic_visit(node)

    def visit_AsyncFor(self, node):
        self.is_async = True
        return self.generic_visit(node)

    def visit_AsyncWith(self, node):
        self.is_async = True
        return self.generic_visit(node)

    def visit_Yield(self, node):
        raise self._error("'yield' outside function", node)

    visit_YieldFrom = visit_Yield
