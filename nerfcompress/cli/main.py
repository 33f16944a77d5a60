"""``ns-compress``: nerfcompress's command line (tyro subcommands in nerfstudio's style)."""

from __future__ import annotations

import tyro

from nerfcompress.cli.evaluate import Evaluate
from nerfcompress.cli.export import Export
from nerfcompress.cli.image import image_command
from nerfcompress.cli.import_file import Import
from nerfcompress.cli.info import Info
from nerfcompress.cli.scene import MakeScene
from nerfcompress.cli.view import View

COMMANDS = {
    "export": Export,
    "import": Import,
    "info": Info,
    "eval": Evaluate,
    "scene": MakeScene,
    "image": image_command,
    "view": View,
}


def entrypoint() -> None:
    """Runs the chosen ``ns-compress`` subcommand."""
    tyro.extras.set_accent_color("bright_yellow")
    command = tyro.extras.subcommand_cli_from_dict(COMMANDS)
    command.main()


if __name__ == "__main__":
    entrypoint()
