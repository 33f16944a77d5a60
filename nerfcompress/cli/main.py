"""``ns-compress``: nerfcompress's command line (tyro subcommands in nerfstudio's style)."""

from __future__ import annotations

import tyro

from nerfcompress.cli.scene import MakeScene

COMMANDS = {
    "scene": MakeScene,
}


def entrypoint() -> None:
    """Runs the chosen ``ns-compress`` subcommand."""
    tyro.extras.set_accent_color("bright_yellow")
    command = tyro.extras.subcommand_cli_from_dict(COMMANDS)
    command.main()


if __name__ == "__main__":
    entrypoint()
