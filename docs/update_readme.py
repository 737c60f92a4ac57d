"""Regenerate the README's configuration reference from ``Config.describe()``.

    python docs/update_readme.py          # rewrite README.md in place
    python docs/update_readme.py --check  # exit 1 if README.md is out of date

``tests/test_readme.py`` runs the check, so the table cannot drift from the code.
"""

import os
import sys

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def config_reference_table():
    """The Markdown table: one row per Config attribute, derived values last."""
    from mrcnn_tf.config import Config

    rows = ["| attribute | default | meaning |", "| --- | --- | --- |"]
    for name, default, description in Config.describe():
        shown = repr(default.tolist() if hasattr(default, "tolist") else default)
        rows.append(f"| `{name}` | `{shown}` | {description.replace('|', '/')} |")
    return "\n".join(rows)


def render(readme_text):
    """README text with the table between the markers replaced."""
    before, rest = readme_text.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{config_reference_table()}\n{END}{after}"


def main(argv):
    with open(README, encoding="utf-8") as f:
        current = f.read()
    updated = render(current)
    if "--check" in argv:
        if updated != current:
            print("README.md configuration reference is out of date: run python docs/update_readme.py")
            return 1
        return 0
    with open(README, "w", encoding="utf-8") as f:
        f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
