"""Records which variables its build could see, as a module the endpoint then answers with."""

import os
from pathlib import Path

from setuptools import setup

package = Path(__file__).parent / "trainml_fixture_buildseen"
package.mkdir(exist_ok=True)
(package / "__init__.py").write_text(f"NAMES = {sorted(os.environ)!r}\n")
setup(name="trainml-fixture-buildseen", version="1.0", packages=["trainml_fixture_buildseen"])
