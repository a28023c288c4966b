# Sourced by the scripts: make sure .venv exists and holds the project with the extras "$1".
# Needs nothing but Python 3.11+ on the machine; reinstalls when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  python=""
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
  if [ -z "$python" ]; then
    echo "liver-pathway needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    exit 2
  fi
  echo "creating .venv with $python" >&2
  "$python" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.installed${extras:+-$extras}"
fresh() { [ -f "$1" ] && ! [ "$ROOT/pyproject.toml" -nt "$1" ]; }
# an install with the test extras holds everything a plain install does
if [ -z "$extras" ] && fresh "$ROOT/.venv/.installed-test"; then stamp="$ROOT/.venv/.installed-test"; fi
if ! fresh "$stamp"; then
  echo "installing liver-pathway${extras:+ [$extras]} into .venv" >&2
  spec="$ROOT"
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" 2>&1 |
    grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$ROOT/.venv/bin/python" -c 'import pathway, states, persistence' # fails loudly if the install did
  touch "$stamp"
fi
