#!/usr/bin/python3
"""Render every NAME.jinja of this folder for every conversation of cases.json
with python3-jinja2 (Debian 12: 3.1.2) and write expected.json, the reference
for tests/unit/template_more_test.cpp.

Settings match shared/golden/templates ("sandboxed"): SandboxedEnvironment
(not the Immutable one HF transformers uses: our renderer, like the recorded
list_mutation case of template_render_test.cpp, lets list.append() and
dict.update() mutate; only Kimi-K2's tool-call path depends on it),
trim_blocks and lstrip_blocks on, the loopcontrols extension, globals
raise_exception(msg) and strftime_now(fmt) (fixed at 2026-01-15),
bos_token "<s>", eos_token "</s>"; jinja2's own tojson (sorted keys,
HTML-safe escapes); the {% generation %} block tag of HF transformers
renders its body unchanged.

expected.json: {"settings", "renders": {NAME.jinja: {case: {"text": ...} or
{"error": "TemplateError: msg"} (raise_exception) or {"error": "Type: msg"}
(any other exception)}}, "snippets": {name: same}} where snippets are the
short feature templates of snippets.json rendered with only bos/eos_token.  Run: /usr/bin/python3 render_expected.py
"""
import collections
import datetime
import json
import os
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


class TemplateError(Exception):
    pass


class GenerationTag(Extension):
    """{% generation %}...{% endgeneration %} as HF transformers defines it
    (it marks assistant tokens for masks): renders its body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(msg):
    raise TemplateError(msg)


def strftime_now(fmt):
    return datetime.datetime(2026, 1, 15).strftime(fmt)


def main():
    env = SandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                               extensions=["jinja2.ext.loopcontrols", GenerationTag])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    with open(os.path.join(HERE, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    renders = collections.OrderedDict()
    for name in sorted(os.listdir(HERE)):
        if not name.endswith(".jinja"):
            continue
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            src = f.read()
        try:
            tmpl = env.from_string(src)
        except Exception as e:  # noqa: BLE001 - report and skip
            print(f"{name}: does not parse: {e}", file=sys.stderr)
            continue
        out = collections.OrderedDict()
        for case in cases:
            ctx = {k: v for k, v in case.items() if k != "name"}
            ctx["bos_token"] = "<s>"
            ctx["eos_token"] = "</s>"
            try:
                out[case["name"]] = {"text": tmpl.render(**ctx)}
            except TemplateError as e:
                out[case["name"]] = {"error": "TemplateError: " + str(e)}
            except Exception as e:  # noqa: BLE001 - the template itself fails
                out[case["name"]] = {"error": type(e).__name__ + ": " + str(e)}
        renders[name] = out
    with open(os.path.join(HERE, "snippets.json"), encoding="utf-8") as f:
        snippets = json.load(f)["snippets"]
    snippet_out = collections.OrderedDict()
    for name, src in snippets.items():
        try:
            snippet_out[name] = {"text": env.from_string(src).render(bos_token="<s>", eos_token="</s>")}
        except TemplateError as e:
            snippet_out[name] = {"error": "TemplateError: " + str(e)}
        except Exception as e:  # noqa: BLE001
            snippet_out[name] = {"error": type(e).__name__ + ": " + str(e)}
    result = collections.OrderedDict()
    result["settings"] = (f"jinja2 {jinja2.__version__}, SandboxedEnvironment, trim_blocks=True, "
                          "lstrip_blocks=True, loopcontrols, {% generation %} as in transformers; globals raise_exception(msg), strftime_now(fmt) "
                          "fixed at 2026-01-15; bos_token='<s>', eos_token='</s>'")
    result["renders"] = renders
    result["snippets"] = snippet_out
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n = sum(len(v) for v in renders.values())
    errors = sum(1 for v in renders.values() for r in v.values() if "error" in r)
    print(f"{len(renders)} templates, {n} renders ({errors} errors)")


if __name__ == "__main__":
    main()
