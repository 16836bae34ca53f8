"""The one flag style of every command: absl flags declared as specs.

A command module declares ``FLAG_SPECS = {name: Flag(...)}`` and a
``main(values)`` taking the flag values as a dict, and ends with::

    if __name__ == "__main__":
      cli.run_program(FLAG_SPECS, main)

Flags are defined in absl only when the module runs as the program;
importing a command defines none, so commands (and their tests) share one
Python process, and code that launches a command (the study, the benchmark)
reads its defaults with :func:`default_flag_values` without running it.
Programmatic runs pass ``{**default_flag_values(FLAG_SPECS), ...}``.

Errors of the user's input (flags that do not parse or do not fit together,
a missing or corrupt data file, a logdir that holds another run or is in use,
a run with no intact checkpoint) end the program with one line on stderr,
``FATAL <message>``, and exit status 2 (:data:`USER_ERROR_STATUS`); with
``--show_traceback``, a flag :func:`run_program` gives every command, the
traceback is printed before that line. Such errors are raised as
:class:`UserError` (or, from ``tf_discrete.datasets``, as its
``DatasetNotFoundError`` / ``CorruptDatasetError``) and caught only in
:func:`run_program`; any other exception is a bug and propagates with its
traceback.
"""

import contextlib
import dataclasses
import sys
import traceback
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from absl import app
from absl import flags
from absl import logging

#: Exit status of a user error (as for a command-line usage error).
USER_ERROR_STATUS = 2
#: The flag that prints the traceback of a user error (every command).
SHOW_TRACEBACK = "show_traceback"


class UserError(Exception):
  """A mistake in what the user gave a command, not a bug.

  :func:`run_program` reports it in one line and exits with status 2.
  """


class FlagsError(UserError, ValueError):
  """Flags that cannot apply together (or to the data)."""


@dataclasses.dataclass(frozen=True)
class Flag:
  """An absl flag, declared without defining it.

  Attributes:
    kind: the ``flags.DEFINE_<kind>`` function: "bool", "enum", "float",
      "integer", "list" or "string".
    default: the default value.
    help: the help text.
    options: further keywords of the DEFINE function (``enum_values``,
      ``lower_bound``, ``upper_bound``).
  """
  kind: str
  default: Any
  help: str
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def define(self, name: str, flag_values: flags.FlagValues,
             module_name: Optional[str] = None):
    define = getattr(flags, f"DEFINE_{self.kind}")
    define(name=name, default=self.default, help=self.help,
           flag_values=flag_values, module_name=module_name, **self.options)


def default_flag_values(specs: Mapping[str, Flag]) -> Dict[str, Any]:
  """Every flag of ``specs`` at its default (a fresh copy)."""
  return {name: (list(spec.default) if isinstance(spec.default, list)
                 else spec.default) for name, spec in specs.items()}


def define_flags(specs: Mapping[str, Flag],
                 flag_values: flags.FlagValues = flags.FLAGS,
                 module_name: Optional[str] = None):
  """Defines ``specs`` in ``flag_values``.

  ``module_name``: the module the flags belong to in ``--helpshort``
  (default: this one).
  """
  for name, spec in specs.items():
    spec.define(name, flag_values, module_name)


def user_error_types() -> Tuple[type, ...]:
  """The exception types :func:`run_program` reports as user errors.

  :class:`UserError`, and the data errors of ``tf_discrete.datasets``
  (a ``FileNotFoundError`` and a ``ValueError`` subclass) once that module
  is loaded: an exception of its types can only come from it, and a command
  that never loads data need not import it.
  """
  types = [UserError]
  data = sys.modules.get("tf_discrete.datasets")
  if data is not None:
    types += [data.DatasetNotFoundError, data.CorruptDatasetError]
  return tuple(types)


def one_line(error: BaseException) -> str:
  """The message of ``error`` on one line."""
  return " ".join(str(error).split()) or type(error).__name__


def exit_with_user_error(error: BaseException):
  """Prints ``FATAL <message>`` (after the traceback with
  ``--show_traceback``) on stderr and exits with status 2."""
  show = SHOW_TRACEBACK in flags.FLAGS and flags.FLAGS.is_parsed() and (
      flags.FLAGS[SHOW_TRACEBACK].value)
  if show:
    traceback.print_exception(error)
  sys.stderr.write(f"FATAL {one_line(error)}\n")
  sys.stderr.flush()
  sys.exit(USER_ERROR_STATUS)


def _parse_flags(argv):
  """absl's flag parsing, with a parse error reported as a user error."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    exit_with_user_error(UserError(
        f"Flags parsing error: {one_line(e)} (pass --helpshort or "
        f"--helpfull to see help on flags)"))


@contextlib.contextmanager
def quiet_library_logs():
  """Unless --verbosity was given, lets only errors through absl logging
  for the duration (tensorflow-datasets warns about folders it probes
  before a missing-data error says all there is to say)."""
  if "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present:
    yield
    return
  before = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(before)


def run_program(specs: Mapping[str, Flag],
                run: Callable[[Mapping[str, Any]], Any],
                check_flags: Optional[Callable[[Mapping[str, Any]], Any]] = None):
  """Defines the flags in ``flags.FLAGS`` and runs ``run(values)`` as the
  program.

  Flags that do not parse, or that ``check_flags`` rejects
  (ValueError/TypeError), end the program before anything is loaded. Those
  and the user errors ``run`` raises (:func:`user_error_types`) print one
  line and exit with status 2; ``--show_traceback`` (defined here for every
  command, not one of ``specs``) prints their traceback too. A dict
  returned by ``run`` is logged as the run's summary; an int is the exit
  status.
  """
  # Owned by the program, so that --helpshort lists them.
  define_flags(specs, module_name=sys.argv[0])
  if SHOW_TRACEBACK not in flags.FLAGS:
    flags.DEFINE_bool(
        SHOW_TRACEBACK, False,
        "Print the traceback of a user error (bad flags, missing or corrupt "
        "data, a logdir in use or holding another run) before its one-line "
        "message.", module_name=sys.argv[0])

  def main(argv):
    # Quiet by default: a command prints its own progress lines (stdout);
    # absl and TensorFlow INFO logs appear with --verbosity=0 (or higher).
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    try:
      if len(argv) > 1:
        raise UserError(f"Unexpected arguments: {argv[1:]} (flags are "
                        f"--name=value)")
      values = {name: flags.FLAGS[name].value for name in specs}
      if check_flags is not None:
        try:
          check_flags(values)
        except (ValueError, TypeError) as e:
          raise FlagsError(
              f"Flags that do not fit together: {one_line(e)} (pass "
              f"--helpshort or --helpfull to see help on flags)") from e
      result = run(values)
    except user_error_types() as e:
      exit_with_user_error(e)
    if isinstance(result, dict):
      logging.info("Summary: %s", {k: v for k, v in result.items()
                                   if k != "flags"})
    elif isinstance(result, int):
      sys.exit(result)

  app.run(main, flags_parser=_parse_flags)


