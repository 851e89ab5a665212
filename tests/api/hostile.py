"""Hostile content shared by the API, CLI and page tests."""

# A plan document whose items carry markup: the API must return it verbatim and
# the page must show it as text, never run it.
EVIL_SCRIPT = "<script>alert(1)</script>"
EVIL_IMG = '<img src=x onerror="window.__xss=1">'
EVIL_TITLE = "2024年某县网络安全工作要点"
EVIL_TEXT = f"""{EVIL_TITLE}

为加强网络安全防护能力，现提出如下工作要点。

一、加强网页安全防护

1.开展跨站脚本攻击专项检查，重点排查{EVIL_SCRIPT}这类恶意脚本注入代码在门户网站的残留情况。

2.清理门户网站中的恶意图片标签{EVIL_IMG}，建立网页内容安全审核机制。

二、提升应急处置能力

3.完善网络安全应急预案，每年至少组织两次网络安全应急演练，提高突发事件处置水平。
"""
