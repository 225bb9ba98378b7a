"""Inside the real Krita: import the release zip (LD_E2E_ZIP) with Krita's own plugin importer, the code behind
Tools > Scripts > Import Python Plugin from File..., answer its questions as a user does (overwrite: yes, enable
now: yes, which writes enable_<name>=true as the importer's own activate_plugins does), report, quit."""

import importlib.util
import json
import os
import sys
import traceback

from krita import Extension, Krita

OUT = os.environ.get("LD_E2E_OUT", "")


def report(data: dict) -> None:
    tmp = os.path.join(OUT, "report.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, os.path.join(OUT, "report.json"))


def krita_importer():
    """plugin_importer/plugin_importer.py of this Krita's own pykrita folder, loaded by path (importing the
    plugin_importer package would register its menu extension a second time)."""
    for folder in sys.path:
        path = os.path.join(folder, "plugin_importer", "plugin_importer.py")
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("krita_plugin_importer", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise RuntimeError(f"Krita's plugin_importer is not on its sys.path: {sys.path}")


class Importer(Extension):
    def setup(self):
        Krita.instance().notifier().windowCreated.connect(self.run)

    def createActions(self, window):
        pass

    def run(self):
        data = {"krita": {"version": Krita.instance().version(), "python": sys.version.split()[0]}}
        try:
            importer = krita_importer()
            data["importer"] = importer.__file__
            asked = []
            imported = importer.PluginImporter(os.environ["LD_E2E_ZIP"], Krita.instance().getAppDataLocation(),
                                               lambda plugin: asked.append(plugin["name"]) or True).import_all()
            for plugin in imported:  # what the importer's activate_plugins does when the user answers "Yes"
                Krita.instance().writeSetting("python", f"enable_{plugin['name']}", "true")
            data.update(imported=[p["name"] for p in imported], overwrite_asked=asked,
                        resources=Krita.instance().getAppDataLocation(), done=True)
        except Exception:
            data["error"] = traceback.format_exc()
        report(data)
        Krita.instance().action("file_quit").trigger()


Krita.instance().addExtension(Importer(Krita.instance()))
