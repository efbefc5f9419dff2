"""Renders a Helm chart with Helm's own template engine (the helm-python-sdk package ships
Helm's Go library) and prints the manifests as JSON: {"chart/templates/x.yaml": "..."}.

Usage: render.py CHART_DIR RELEASE NAMESPACE VALUES_JSON_FILE
Exit 1 with Helm's message on stderr when the chart does not render (an unknown template
function, a missing value, a template error).
"""

import json
import sys

import helm_python as helm
from helm_python.errors import HelmError


def main() -> int:
    chart_dir, release, namespace, values_file = sys.argv[1:5]
    with open(values_file, encoding="utf-8") as f:
        values = json.load(f)
    try:
        with helm.Chart.load(chart_dir) as chart:
            rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    except HelmError as e:
        print(e, file=sys.stderr)
        return 1
    json.dump(rendered, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
