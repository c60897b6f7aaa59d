import subprocess
import sys


def test_engine_never_imports_streamlit():
    # A fresh interpreter: other tests may have imported streamlit already.
    code = "import sys, hyre_engine; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
