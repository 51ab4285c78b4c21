"""``python -m lighthouse_serving``: the serving tier's command line (see ``cli``)."""

from lighthouse_serving.cli import app

# The guard matters: vLLM and Ray start processes that re-import the main module.
if __name__ == "__main__":
    app(prog_name="python -m lighthouse_serving")
