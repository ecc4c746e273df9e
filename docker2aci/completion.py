"""Static shell completion scripts (bash, zsh, fish) made from argparse parsers.

:func:`render` walks the parsers of a command's subcommands (their options, positional
arguments and nested sub-parsers, such as ``keys generate``) and writes a script that
completes them with nothing but the shell: no Python runs when TAB is pressed. It
completes

* subcommand names (nested ones too), where a subcommand may come;
* the long (``--``) spellings of each subcommand's options; every spelling (``-name`` too)
  is recognised when the words before the cursor are read;
* an option's value: one of its ``choices``; directory names when its metavar has the
  word ``DIR`` (``DIR``, ``CACHE_DIR``); file names when it has ``FILE`` or ``PATH``
  (``KEYFILE``, ``FILE.json``); nothing for other values (``--opt VALUE`` and
  ``--opt=VALUE`` alike);
* positional arguments: their ``choices``, directory names (metavar with ``DIR``) or file
  names; file names after ``--``; an image source (``source``) completes as a file name,
  also after the transports that name a file or directory (``docker-archive:PATH``,
  ``oci-archive:PATH``, ``oci:DIR``).

A parser can say what completes an argument where the metavar would mislead: set the
attribute :data:`COMPLETE` of the action ``add_argument`` returns to ``"file"``, ``"dir"``,
``"source"`` or ``"none"`` (``p.add_argument("repo", metavar="HOST/REPO").complete = "none"``).

The scripts hold their tables as ``case`` statements (bash, zsh) and ``complete`` rules
(fish), generated from a :class:`Node` tree that :func:`command_tree` builds.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: The shells :func:`render` writes scripts for.
SHELLS = ("bash", "zsh", "fish")

#: The attribute of an argparse action that overrides what completes its value:
#: ``"file"``, ``"dir"``, ``"source"`` (an image source: a file, or a path after its
#: transport) or ``"none"``.
COMPLETE = "complete"
_OVERRIDES = {"file": "file", "dir": "dir", "source": "source", "none": "word"}
_DIR_METAVAR = re.compile(r"DIR(?![A-Z])")
_FILE_METAVAR = re.compile(r"(FILE|PATH)(?![A-Z])")

#: What a command name or an option may be, and what a choice may hold, to go into a script unquoted.
_NAME = re.compile(r"-{0,2}[A-Za-z0-9][A-Za-z0-9_.-]*")
_WORD = re.compile(r"[A-Za-z0-9_.,:+@%/=-]+")
_DESCRIPTION_WIDTH = 72


@dataclass(frozen=True)
class Value:
    """What an option's value or a positional argument is: ``kind`` is ``flag`` (an option
    without a value), ``word`` (no completion), ``file``, ``dir``, ``source`` (a file, also
    after ``docker-archive:``, ``oci-archive:`` and, a directory, ``oci:``) or ``choice``
    (one of ``choices``)."""

    kind: str
    choices: tuple[str, ...] = ()


_FLAG = Value("flag")
_NONE = Value("word")


@dataclass(frozen=True)
class Option:
    """One option: every spelling, the spellings offered (the ``--`` ones), its value and
    the first sentence of its help."""

    spellings: tuple[str, ...]
    offered: tuple[str, ...]
    value: Value
    help: str


@dataclass(frozen=True)
class Node:
    """A command (or the program itself, or a nested sub-action) and what completes after it.

    ``ident`` names it in the scripts (``root``, ``convert``, ``keys_generate``);
    ``positionals`` are the values of its positional arguments in order, the last one
    repeated when ``repeat_last``; ``children`` are its subcommands; ``first_options``
    (option, help) are offered only as the first word of the command line.
    """

    ident: str
    name: str
    help: str
    options: tuple[Option, ...]
    positionals: tuple[Value, ...]
    repeat_last: bool
    children: tuple[Node, ...]
    first_options: tuple[tuple[str, str], ...] = ()

    def walk(self) -> list[Node]:
        """This node and every node under it, parents first."""
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


def command_tree(commands: Mapping[str, argparse.ArgumentParser], *, default: str | None = None,
                 first_options: Mapping[str, str] | None = None) -> Node:
    """The :class:`Node` tree of a program whose subcommands are ``commands``.

    Args:
        commands: each subcommand's name and parser, in the order they are offered.
        default: the subcommand that runs when the first word is not a subcommand name
            (``docker2aci IMAGE`` is ``docker2aci convert IMAGE``): its options and
            positional arguments complete there too.
        first_options: options (to their help) valid only as the first word (``--version``).

    Raises:
        ValueError: ``default`` is not one of ``commands``; a command name, option or choice
            holds a character that a script cannot take unquoted (space, quote, ``$``); an
            action's :data:`COMPLETE` is not ``file``, ``dir`` or ``none``.
    """
    if default is not None and default not in commands:
        raise ValueError(f"the default command {default!r} is not one of the commands")
    children = tuple(_node(parser, _ident(name), _checked(name, _NAME), _first_sentence(parser.description or ""))
                     for name, parser in commands.items())
    base = _node(commands[default], "root", "", "") if default is not None else None
    leading = tuple((_checked(option, _NAME), _first_sentence(text)) for option, text in (first_options or {}).items())
    root = Node(ident="root", name="", help="", options=base.options if base else (),
                positionals=base.positionals if base else (), repeat_last=base.repeat_last if base else False,
                children=children, first_options=leading)
    idents = [node.ident for node in root.walk()]
    if len(set(idents)) != len(idents):
        raise ValueError(f"two commands have the same name in a script: {sorted(idents)}")
    return root


def render(shell: str, prog: str, commands: Mapping[str, argparse.ArgumentParser], *,
           default: str | None = None, first_options: Mapping[str, str] | None = None) -> str:
    """The completion script of ``prog`` for ``shell``.

    Args:
        shell: ``bash``, ``zsh`` or ``fish`` (:data:`SHELLS`).
        prog: the program's name, as typed (``docker2aci``).
        commands, default, first_options: as :func:`command_tree` takes them.

    Returns:
        The script's text (ends with a newline): bash's to ``source``, zsh's to put in
        ``fpath`` as ``_<prog>`` (or to ``source`` after ``compinit``), fish's for
        ``~/.config/fish/completions/<prog>.fish``.

    Raises:
        ValueError: ``shell`` is not one of :data:`SHELLS`; or as :func:`command_tree`.
    """
    writers = {"bash": _bash, "zsh": _zsh, "fish": _fish}
    if shell not in writers:
        raise ValueError(f"unknown shell {shell!r}: use one of {', '.join(SHELLS)}")
    return writers[shell](_checked(prog, _NAME), command_tree(commands, default=default, first_options=first_options))


# ---------------------------------------------------------------------------- argparse

def _node(parser: argparse.ArgumentParser, ident: str, name: str, help_text: str) -> Node:
    options: list[Option] = []
    positionals: list[Value] = []
    repeat_last = False
    children: list[Node] = []
    for action in parser._actions:  # argparse has no public way to list a parser's arguments
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for sub_name, sub_parser in action.choices.items():
                sub_help = helps.get(sub_name) or sub_parser.description or ""
                children.append(_node(sub_parser, f"{ident}_{_ident(sub_name)}", _checked(sub_name, _NAME),
                                      _first_sentence(sub_help)))
        elif action.option_strings:
            spellings = tuple(_checked(s, _NAME) for s in action.option_strings)
            offered = tuple(s for s in spellings if s.startswith("--")) or spellings[:1]
            options.append(Option(spellings, offered, _value(action), _first_sentence(action.help or "")))
        else:
            value = _value(action)
            if isinstance(action.nargs, int):
                positionals.extend([value] * action.nargs)
            else:
                positionals.append(value)
                repeat_last = action.nargs in ("+", "*", argparse.REMAINDER)
    return Node(ident=ident, name=name, help=help_text, options=tuple(options), positionals=tuple(positionals),
                repeat_last=repeat_last, children=tuple(children))


def _value(action: argparse.Action) -> Value:
    if action.nargs == 0:
        return _FLAG
    override = getattr(action, COMPLETE, None)
    if override is not None:
        if override not in _OVERRIDES:
            raise ValueError(f"{action.dest}: {COMPLETE}={override!r}; use one of {', '.join(_OVERRIDES)}")
        return Value(_OVERRIDES[override])
    if action.choices is not None:
        return Value("choice", tuple(_checked(str(c)) for c in action.choices))
    metavar = action.metavar if action.metavar is not None else action.dest
    if isinstance(metavar, tuple):
        metavar = metavar[0] if metavar else ""
    if not action.option_strings and action.metavar is None:  # a positional named by its dest
        metavar = metavar.upper()
    if _DIR_METAVAR.search(metavar):
        return Value("dir")
    if _FILE_METAVAR.search(metavar) or not action.option_strings:
        return Value("file")
    return _NONE


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name)


def _checked(word: str, allowed: re.Pattern[str] = _WORD) -> str:
    if not allowed.fullmatch(word):
        raise ValueError(f"{word!r} cannot go into a completion script (allowed: {allowed.pattern})")
    return word


def _first_sentence(text: str) -> str:
    """The text up to its first "; " or ". " (not before a lowercase letter or a digit)
    outside parentheses, on one line, at most :data:`_DESCRIPTION_WIDTH` characters."""
    text = " ".join(text.replace("%%", "%").split())
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        after = text[index + 2:index + 3]
        if depth == 0 and text[index + 1:index + 2] == " " and (
                char == ";" or (char == "." and not (after.islower() or after.isdigit()))):
            text = text[:index]
            break
    text = text.rstrip(".")
    if len(text) > _DESCRIPTION_WIDTH:
        text = text[:_DESCRIPTION_WIDTH - 3].rsplit(" ", 1)[0] + "..."
    return text


def _quoted(text: str) -> str:
    """``text`` in single quotes, for bash and zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _fish_quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _function(prog: str) -> str:
    return "_" + _ident(prog)


# ---------------------------------------------------------------------------- bash and zsh

def _value_cases(nodes: list[Node], indent: str, choices: Callable[[tuple[str, ...]], str]) -> list[str]:
    """``case`` branches (bash and zsh share the syntax) that set ``value`` (and the choices)
    for ``NODE:OPTION``; options without a value fall to the caller's ``*)``."""
    lines: list[str] = []
    for node in nodes:
        for option in node.options:
            if option.value.kind == "flag":
                continue
            pattern = "|".join(f"{node.ident}:{s}" for s in option.spellings)
            lines.append(f"{indent}{pattern}) {_set_value(option.value, choices)};;")
    return lines


def _positional_cases(nodes: list[Node], indent: str, choices: Callable[[tuple[str, ...]], str]) -> list[str]:
    """``case`` branches that set ``value`` for ``NODE:INDEX`` (0-based positional index)."""
    lines: list[str] = []
    for node in nodes:
        for index, value in enumerate(node.positionals):
            last = node.repeat_last and index == len(node.positionals) - 1
            lines.append(f"{indent}{node.ident}:{'*' if last else index}) {_set_value(value, choices)};;")
    return lines


def _set_value(value: Value, choices: Callable[[tuple[str, ...]], str]) -> str:
    """``value=KIND``, and for choices the assignment ``choices`` makes of them."""
    text = f"value={value.kind}"
    if value.kind == "choice":
        text += "; " + choices(value.choices)
    return text


def _bash_choices(words: tuple[str, ...]) -> str:
    return "choices=" + _quoted(" ".join(words))


def _zsh_choices(words: tuple[str, ...]) -> str:
    return "choices=(" + " ".join(_quoted(word) for word in words) + ")"


def _child_cases(nodes: list[Node], indent: str) -> list[str]:
    return [f"{indent}{node.ident}:{child.name}) child={child.ident};;" for node in nodes for child in node.children]


_LOOKUPS = r"""{fn}_child() {{  # NODE WORD: sets child to the node WORD selects, or to nothing
    case $1:$2 in
{children}
        *) child='';;
    esac
}}

{fn}_option() {{  # NODE OPTION: sets value (flag, word, file, dir, choice) and choices
    case $1:$2 in
{options}
        *) value=flag;;
    esac
}}

{fn}_positional() {{  # NODE INDEX: the same for the INDEX-th positional argument (from 0)
    case $1:$2 in
{positionals}
        *) value=word;;
    esac
}}
"""
"""The lookup functions bash and zsh scripts share: a node's child, an option's value, a
positional's value."""


def _lookups(fn: str, nodes: list[Node], choices: Callable[[tuple[str, ...]], str]) -> str:
    return _LOOKUPS.format(fn=fn, children="\n".join(_child_cases(nodes, "        ")),
                           options="\n".join(_value_cases(nodes, "        ", choices)),
                           positionals="\n".join(_positional_cases(nodes, "        ", choices)))


_BASH = r"""# bash completion for {prog}: generated by `{prog} completion bash`.
# Install: {prog} completion bash > ~/.local/share/bash-completion/completions/{prog}
# (loaded on demand by the bash-completion package), or source it from ~/.bashrc.

{fn}_node() {{  # NODE: sets opts (offered options) and cmds (subcommand names)
    case $1 in
{nodes}
    esac
}}

{lookups}
{fn}_reply() {{  # adds to COMPREPLY the words of a $value that complete $cur, each after $prefix
    local line
    case $value in
        choice) while IFS= read -r line; do COMPREPLY+=("$prefix$line"); done < <(compgen -W "$choices" -- "$cur");;
        file) compopt -o filenames 2>/dev/null
              while IFS= read -r line; do COMPREPLY+=("$prefix$line"); done < <(compgen -f -- "$cur");;
        dir) compopt -o filenames 2>/dev/null
             while IFS= read -r line; do COMPREPLY+=("$prefix$line"); done < <(compgen -d -- "$cur");;
        source) case $cur in  # the path after a transport that names one; the rest of a docker: reference, nothing
                    docker-archive:*|oci-archive:*) prefix+=${{cur%%:*}}: cur=${{cur#*:}} value=file;;
                    oci:*) prefix+=oci: cur=${{cur#oci:}} value=dir;;
                    docker:*|docker-daemon:*) return;;
                    *) value=file;;
                esac
                {fn}_reply;;
    esac
}}

{fn}_words() {{  # sets words, cword and cur: COMP_WORDS up to the cursor, joined again where
    # COMP_WORDBREAKS split one shell word (--creds=user:pass is five COMP_WORDS) by COMP_LINE
    local i w line=${{COMP_LINE-}} trimmed joining=1
    words=()
    for ((i = 0; i <= COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        trimmed=${{line#"${{line%%[![:space:]]*}}"}}
        if ((joining && i > 0 && ${{#trimmed}} == ${{#line}})); then
            words[${{#words[@]}}-1]+=$w
        else
            words+=("$w")
        fi
        if [[ ${{trimmed:0:${{#w}}}} == "$w" ]]; then
            line=${{trimmed:${{#w}}}}
        else
            joining=0
        fi
    done
    cword=$((${{#words[@]}} - 1))
    cur=${{words[cword]}}
}}

{fn}_complete() {{  # fills COMPREPLY with the words that complete $cur (whole shell words)
    local cur=$cur i w node=root npos=0 dashdash=0 opts='' cmds='' child='' value='' choices='' prefix=''
    for ((i = 1; i < cword; i++)); do
        w=${{words[i]}}
        if ((dashdash)); then
            :
        elif [[ $w == -- ]]; then
            dashdash=1
        elif [[ $w == -?* ]]; then
            [[ $w == *=* ]] && continue
            {fn}_option "$node" "$w"
            [[ $value == flag ]] && continue
            if ((i + 1 == cword)); then  # the cursor is on this option's value
                {fn}_reply
                return
            fi
            ((i++))
        else
            child=''
            ((npos == 0)) && [[ $node != root || $i == 1 ]] && {fn}_child "$node" "$w"
            if [[ -n $child ]]; then
                node=$child
            else
                ((npos++))
            fi
        fi
    done
    if ((dashdash)); then
        value=file
        {fn}_reply
        return
    fi
    if [[ $cur == -?*=* ]]; then
        {fn}_option "$node" "${{cur%%=*}}"
        prefix=${{cur%%=*}}=
        cur=${{cur#*=}}
        {fn}_reply
        return
    fi
    {fn}_node "$node"
    if [[ $cur == -* ]]; then
        [[ $node == root && $cword == 1 ]] && opts+=" {first}"
        value=choice choices=$opts
        {fn}_reply
        return
    fi
    if ((npos == 0)) && [[ -n $cmds && ( $node != root || $cword == 1 ) ]]; then
        for w in $cmds; do
            [[ $w == "$cur"* ]] && COMPREPLY+=("$w")
        done
        ((${{#COMPREPLY[@]}})) && return
    fi
    {fn}_positional "$node" "$npos"
    {fn}_reply
}}

{fn}() {{
    local -a words=()
    local cword cur tail i cut
    {fn}_words
    COMPREPLY=()
    {fn}_complete
    # bash replaces only the text after the last COMP_WORDBREAKS character: the words lose what precedes it
    tail=${{COMP_WORDS[COMP_CWORD]}}
    while [[ -n $tail && $COMP_WORDBREAKS == *"${{tail:0:1}}"* ]]; do
        tail=${{tail:1}}
    done
    cut=$((${{#cur}} - ${{#tail}}))
    if ((cut > 0)); then
        for i in "${{!COMPREPLY[@]}}"; do
            COMPREPLY[i]=${{COMPREPLY[i]:cut}}
        done
    fi
    return 0
}}

complete -F {fn} {prog}
"""


def _bash(prog: str, root: Node) -> str:
    nodes = root.walk()
    node_lines = [f"        {node.ident}) opts={_quoted(' '.join(s for o in node.options for s in o.offered))}; "
                  f"cmds={_quoted(' '.join(c.name for c in node.children))};;" for node in nodes]
    return _BASH.format(
        prog=prog, fn=_function(prog), nodes="\n".join(node_lines),
        lookups=_lookups(_function(prog), nodes, _bash_choices),
        first=" ".join(option for option, _ in root.first_options))


_ZSH = r"""#compdef {prog}
# zsh completion for {prog}: generated by `{prog} completion zsh`.
# Install: {prog} completion zsh > ~/.zfunc/_{prog}, with fpath=(~/.zfunc $fpath) before
# compinit in ~/.zshrc (any directory of fpath will do); or source it from ~/.zshrc after compinit.

{fn}_node() {{  # NODE: sets opts (offered options with their help) and cmds (subcommands with theirs)
    case $1 in
{nodes}
    esac
}}

{lookups}
{fn}_reply() {{  # completes the current word as a $value
    case $value in
        choice) compadd -a choices;;
        file) _files;;
        dir) _files -/;;
        source) if compset -P '(docker-archive|oci-archive):'; then _files  # the path after its transport
                elif compset -P 'oci:'; then _files -/
                elif [[ $PREFIX != docker(|-daemon):* ]]; then _files
                fi;;
        *) return 1;;
    esac
}}

{fn}() {{
    local node=root child='' value='' w c
    local -a opts cmds choices
    integer i npos=0 dashdash=0
    for ((i = 2; i < CURRENT; i++)); do
        w=$words[i]
        if ((dashdash)); then
            :
        elif [[ $w == -- ]]; then
            dashdash=1
        elif [[ $w == -?* ]]; then
            [[ $w == *=* ]] && continue
            {fn}_option $node $w
            [[ $value == flag ]] && continue
            if ((i + 1 == CURRENT)); then  # the cursor is on this option's value
                {fn}_reply
                return
            fi
            ((i++))
        else
            child=''
            ((npos == 0)) && [[ $node != root || $i == 2 ]] && {fn}_child $node $w
            if [[ -n $child ]]; then
                node=$child
            else
                ((npos++))
            fi
        fi
    done
    if ((dashdash)); then
        _files
        return
    fi
    if [[ $PREFIX == -?*=* ]]; then
        {fn}_option $node ${{PREFIX%%=*}}
        compset -P '*='
        {fn}_reply
        return
    fi
    {fn}_node $node
    if [[ $PREFIX == -* ]]; then
        [[ $node == root && $CURRENT == 2 ]] && opts+=({first})
        _describe -t options option opts
        return
    fi
    if ((npos == 0 && $#cmds)) && [[ $node != root || $CURRENT == 2 ]]; then
        for c in ${{cmds%%:*}}; do
            if [[ $c == ${{PREFIX}}* ]]; then
                _describe -t commands command cmds
                return
            fi
        done
    fi
    {fn}_positional $node $npos
    {fn}_reply
}}

if [[ $funcstack[1] == {fn} ]]; then  # autoloaded from fpath: this file is the function's body
    {fn} "$@"
elif (( $+functions[compdef] )); then  # sourced after compinit
    compdef {fn} {prog}
fi
"""


def _zsh_list(pairs: list[tuple[str, str]]) -> str:
    """A zsh array of ``name:description`` words for ``_describe``, one a line."""
    if not pairs:
        return "()"
    items = "".join(f"\n                {_quoted(f'{name}:{text}' if text else name)}" for name, text in pairs)
    return f"({items}\n            )"


def _zsh(prog: str, root: Node) -> str:
    nodes = root.walk()
    node_lines = []
    for node in nodes:
        opts = _zsh_list([(s, o.help) for o in node.options for s in o.offered])
        cmds = _zsh_list([(c.name, c.help) for c in node.children])
        node_lines.append(f"        {node.ident})\n            opts={opts}\n            cmds={cmds}\n            ;;")
    return _ZSH.format(
        prog=prog, fn=_function(prog), nodes="\n".join(node_lines),
        lookups=_lookups(_function(prog), nodes, _zsh_choices),
        first=" ".join(_quoted(f"{o}:{text}" if text else o) for o, text in root.first_options))


# ---------------------------------------------------------------------------- fish

_FISH = r"""# fish completion for {prog}: generated by `{prog} completion fish`.
# Install: {prog} completion fish > ~/.config/fish/completions/{prog}.fish

function {fn}_child --argument-names node word  # prints the node WORD selects after NODE
    switch "$node:$word"
{children}
    end
end

function {fn}_takes_value --argument-names node option  # whether OPTION of NODE takes a value
    switch "$node:$option"
{valued}
    end
    return 1
end

function {fn}_positional --argument-names node index  # the kind of NODE's INDEX-th argument (from 0)
    switch "$node:$index"
{positionals}
    end
    echo word
end

function {fn}_commands --argument-names node  # NODE's subcommands
    switch $node
{commands}
    end
end

function {fn}_state  # prints the node the words before the cursor select, what the cursor is on, 1 after --
    set -l tokens (commandline -opc)
    set -l node root
    set -l npos 0
    set -l dashdash 0
    set -l i 2
    while test $i -le (count $tokens)
        set -l w $tokens[$i]
        if test $dashdash = 1
        else if test "$w" = --
            set dashdash 1
        else if string match -q -- '-?*' $w
            if not string match -q -- '*=*' $w; and {fn}_takes_value $node $w
                if test $i = (count $tokens)  # the cursor is on this option's value
                    printf '%s\n' $node option:$w 0
                    return
                end
                set i (math $i + 1)
            end
        else
            set -l child
            if test $npos = 0; and begin; test $node != root; or test $i = 2; end
                set child ({fn}_child $node $w)
            end
            if test -n "$child"
                set node $child
            else
                set npos (math $npos + 1)
            end
        end
        set i (math $i + 1)
    end
    if test $dashdash = 1
        printf '%s\n' $node file 1
        return
    end
    if test $npos = 0; and begin; test $node != root; or test (count $tokens) = 1; end
        set -l cur (commandline -ct)
        for c in ({fn}_commands $node)
            if test (string sub -l (string length -- "$cur") -- $c) = "$cur"
                printf '%s\n' $node command 0
                return
            end
        end
    end
    printf '%s\n' $node ({fn}_positional $node $npos) 0
end

function {fn}_at --argument-names node  # the options of NODE apply at the cursor
    set -l state ({fn}_state)
    test $state[1] = $node; and test $state[3] = 0
end

function {fn}_on --argument-names node kind  # the cursor is on a KIND argument of NODE
    set -l state ({fn}_state)
    test $state[1] = $node; and test $state[2] = $kind
end

function {fn}_dirs  # directories for the current word (or the value of its --option=)
    __fish_complete_directories (commandline -ct | string replace -r -- '^-[^=]*=' '') ''
end

function {fn}_source  # an image source: a path, also after docker-archive:, oci-archive: or (a directory) oci:
    set -l token (commandline -ct)
    switch $token
        case 'oci:*'
            __fish_complete_directories (string sub -s 5 -- $token) '' | string replace -r -- '^' 'oci:'
        case 'docker-archive:*' 'oci-archive:*'
            set -l transport (string replace -r -- ':.*' ':' $token)
            __fish_complete_path (string replace -r -- '^[^:]*:' '' $token) | string replace -r -- '^' $transport
        case 'docker:*' 'docker-daemon:*'
        case '*'
            __fish_complete_path $token
    end
end

complete -c {prog} -e
{rules}
"""


def _fish_value(value: Value, fn: str) -> str:
    """The arguments of a ``complete`` rule that complete ``value``."""
    if value.kind == "choice":
        return "-f -a " + _fish_quoted(" ".join(value.choices))
    if value.kind == "file":
        return "-F"
    if value.kind == "source":
        return f"-f -a '({fn}_source)'"
    if value.kind == "dir":
        return f"-f -a '({fn}_dirs)'"
    return "-f"


def _fish(prog: str, root: Node) -> str:
    fn = _function(prog)
    nodes = root.walk()
    rules: list[str] = []
    for node in nodes:
        at, on = f"complete -c {prog} -n '{fn}_at {node.ident}'", f"complete -c {prog} -n '{fn}_on {node.ident}"
        for option in node.options:
            value = "" if option.value.kind == "flag" else " -r " + _fish_value(option.value, fn)
            described = f" -d {_fish_quoted(option.help)}" if option.help else ""
            rules.extend(f"{at} -l {spelling[2:]}{value}{described}" for spelling in option.offered
                         if spelling.startswith("--"))
            if value:  # fish completes the values of --name itself, those of -name by these rules
                rules.extend(f"{on} option:{spelling}' {_fish_value(option.value, fn)}"
                             for spelling in option.spellings if not spelling.startswith("--"))
        for child in node.children:
            described = f" -d {_fish_quoted(child.help)}" if child.help else ""
            rules.append(f"{on} command' -f -a {child.name}{described}")
        kinds: dict[str, Value] = {"word": _NONE}
        for index, value in enumerate(node.positionals):
            kinds[_fish_kind(value, index)] = value
        rules.extend(f"{on} {kind}' {_fish_value(value, fn)}" for kind, value in kinds.items())
    for option, text in root.first_options:
        described = f" -d {_fish_quoted(text)}" if text else ""
        rules.append(f"complete -c {prog} -n 'test (count (commandline -opc)) = 1' -l {option.lstrip('-')}{described}")
    valued = []
    for node in nodes:
        patterns = [_fish_quoted(f"{node.ident}:{s}") for o in node.options if o.value.kind != "flag"
                    for s in o.spellings]
        if patterns:
            valued.append(f"        case {' '.join(patterns)}\n            return 0")
    positionals = []
    for node in nodes:
        for index, value in enumerate(node.positionals):
            last = node.repeat_last and index == len(node.positionals) - 1
            positionals.append(f"        case {_fish_quoted(node.ident + ':' + ('*' if last else str(index)))}\n"
                               f"            echo {_fish_kind(value, index)}; return")
    commands = [f"        case {node.ident}\n            printf '%s\\n' {' '.join(c.name for c in node.children)}"
                for node in nodes if node.children]
    children = [f"        case {_fish_quoted(node.ident + ':' + child.name)}\n            echo {child.ident}"
                for node in nodes for child in node.children]
    return _FISH.format(prog=prog, fn=fn, children="\n".join(children), valued="\n".join(valued),
                        positionals="\n".join(positionals), commands="\n".join(commands), rules="\n".join(rules))


def _fish_kind(value: Value, index: int) -> str:
    """How the state function names a positional argument: its kind, ``choice<index>`` for
    choices (each positional has its own)."""
    return f"choice{index}" if value.kind == "choice" else value.kind
