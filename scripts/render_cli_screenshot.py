"""Render a CLI session to docs/screenshot-cli.png (for the README).

Runs the commands, then draws their plain output (terms marked 【…】 by the
CLI when not on a terminal) as a terminal-like image with the marks shown
as the terminal's yellow highlight.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
COMMANDS = [
    ["plansearch", "ask", "学前三年毛入园率要达到多少?", "-k", "2"],
    ["plansearch", "search", "危化品 报废", "-k", "2"],
]


def main() -> int:
    lines: list[str] = []
    for command in COMMANDS:
        shown = " ".join(f'"{c}"' if " " in c or "?" in c else c for c in command)
        lines.append(f"$ {shown}")
        argv = [sys.executable, "-m", "api.cli", *command[1:]]
        out = subprocess.run(argv, capture_output=True, text=True, check=True)
        lines.extend(out.stdout.rstrip().splitlines())
        lines.append("")
    font = ImageFont.truetype(FONT, 18)
    width, line_height, pad = 1100, 28, 20
    wrapped: list[str] = []
    for line in lines:
        while font.getlength(line.replace("【", "").replace("】", "")) > width - 2 * pad:
            cut = len(line)
            while font.getlength(line[:cut].replace("【", "").replace("】", "")) > width - 2 * pad:
                cut -= 1
            wrapped.append(line[:cut])
            line = "   " + line[cut:]
        wrapped.append(line)
    image = Image.new("RGB", (width, pad * 2 + line_height * len(wrapped)), (30, 32, 36))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(wrapped):
        x, y = pad, pad + row * line_height
        colour = (120, 200, 120) if line.startswith("$") else (225, 225, 225)
        marked = False
        for piece in line.replace("】", "【").split("【"):
            if piece:
                if marked:
                    draw.text((x, y), piece, font=font, fill=(250, 210, 80))
                else:
                    draw.text((x, y), piece, font=font, fill=colour)
                x += font.getlength(piece)
            marked = not marked
    target = Path("docs/screenshot-cli.png")
    image.save(target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
