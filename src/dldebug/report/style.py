"""Colours and the stylesheet of the HTML report.

Every text colour keeps a WCAG AA contrast of at least 4.5:1 on the white page (the
severity badges put white text on the same colours), and every plot line at least 3:1
(non-text contrast); lines also differ by dash pattern, so no colour has to be told
apart. The palette follows Okabe & Ito's colour-blind-safe set, darkened where needed.
"""

from __future__ import annotations

from dldebug.severity import Severity

__all__ = ["CSS", "LINE_COLOURS", "LINE_STYLES", "MARKER_COLOUR", "SEVERITY_COLOURS", "SPAN_FILLS",
           "contrast_ratio"]

# text and badge colours: contrast on white 6.5, 5.9, 6.3
SEVERITY_COLOURS = {Severity.ERROR: "#b3261e", Severity.WARNING: "#8a5a00", Severity.INFO: "#1a5fb4"}
# shaded spans behind the data (drawn at alpha 0.55, the legend names them)
SPAN_FILLS = {Severity.ERROR: "#f4b4b4", Severity.WARNING: "#ffd98a", Severity.INFO: "#b5d3f3"}
LINE_COLOURS = ("#0072b2", "#d55e00", "#007a5e", "#6a3d9a", "#000000", "#8a5a00")  # 5.2, 3.9, 5.3, 7.6, 21, 5.9
LINE_STYLES = ("-", "--", "-.", ":")
MARKER_COLOUR = "#b3261e"


def contrast_ratio(foreground: str, background: str = "#ffffff") -> float:
    """The WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21).

    Example:
        >>> round(contrast_ratio("#000000"), 1)
        21.0
    """
    def luminance(colour: str) -> float:
        channels = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


CSS = """
:root{--text:#1f2328;--muted:#555;--line:#d0d7de;--soft:#f6f8fa;--fix:#2e7d32;--link:#0b57d0}
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--text);background:#fff;
margin:0 auto;max-width:1120px;padding:1rem 1.25rem 3rem;overflow-wrap:anywhere}
a{color:var(--link)} h1{font-size:1.7rem;margin:.5rem 0 .2rem;line-height:1.25}
h2{font-size:1.35rem;margin:0 0 .5rem;line-height:1.3} h3,h4,h5,h6{font-size:1.1rem;margin:1rem 0 .4rem}
.meta{color:var(--muted);font-size:.9rem;margin:.2rem 0 1rem}
.badge{display:inline-block;border-radius:.3rem;padding:.05rem .45rem;font-size:.78rem;font-weight:700;
color:#fff;text-transform:uppercase;letter-spacing:.02em;white-space:nowrap}
.sev-error{background:#b3261e}.sev-warning{background:#8a5a00}.sev-info{background:#1a5fb4}
.counts{display:flex;flex-wrap:wrap;gap:.5rem;margin:.4rem 0 1rem;font-weight:600}
.counts span{border:1px solid var(--line);border-radius:.4rem;padding:.25rem .6rem}
.summary{border:1px solid var(--line);border-radius:.5rem;padding:.75rem 1rem;margin:1rem 0;background:var(--soft)}
.summary h2{font-size:1.15rem}.summary ol{margin:.3rem 0 .6rem;padding-left:1.2rem}
.summary li{margin:.25rem 0}.summary details{margin:.3rem 0}.summary summary{cursor:pointer;font-weight:600}
.where{color:var(--muted);font-size:.85rem}
.lessons{width:100%}.lessons td:first-child{white-space:nowrap}
section.report{border-top:2px solid var(--line);padding-top:1rem;margin:2rem 0}
section.sub{border-left:3px solid var(--line);padding-left:1rem;margin:1.5rem 0}
aside.lesson{border-left:4px solid #6a3d9a;background:#f7f3fb;padding:.5rem .8rem;margin:.6rem 0;font-size:.95rem}
aside.lesson strong{display:block}
.ok{color:var(--fix);font-weight:600}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:var(--soft)} caption{text-align:left;color:var(--muted);font-size:.85rem;padding:.2rem 0}
table.findings{width:100%} table.findings td:first-child{width:6.5rem}
table.findings td:nth-child(2) code{white-space:nowrap;overflow-wrap:normal}
.evidence{color:#444;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.8rem;margin-top:.2rem}
.fix{color:var(--fix);margin-top:.2rem}
.passed{color:#2e7d32}.failed{color:#b3261e}.skipped{color:#555}
.scroll{overflow-x:auto;max-width:100%}
details.table{margin:.5rem 0}details.table>summary{cursor:pointer;color:var(--muted);font-size:.9rem}
details.table>summary code{color:var(--text)}
figure{margin:1rem 0;max-width:600px} .plot{overflow-x:auto}
figure svg{display:block;width:100%;height:auto}
figcaption{color:var(--muted);font-size:.9rem;margin-top:.3rem}
.unlabelled{font-size:.85rem;color:var(--muted)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.88em}
@media (max-width:640px){body{padding:.75rem .75rem 2rem;font-size:15px}h1{font-size:1.4rem}
table.findings td:nth-child(2) code{white-space:normal;overflow-wrap:anywhere}
h2{font-size:1.2rem}section.sub{padding-left:.6rem}table.findings td:first-child{width:auto}
table.findings,table.findings tbody,table.findings tr,table.findings td{display:block;width:100%}
table.findings tr:first-child{display:none}table.findings td{border:0;padding:.15rem 0}
table.findings tr{border-bottom:1px solid var(--line);padding:.4rem 0}}
"""
