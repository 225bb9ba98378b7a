"""Test driver inside the real Krita: runs the scenario named by LD_E2E_SCENARIO against the real
LayeringDiff docker, writes a JSON report (and raw pixel dumps) into LD_E2E_OUT, then quits Krita.

Scenarios are generators: they yield (condition, timeout_s, what) and are resumed when the condition
holds, so Krita's event loop keeps running (the docker's timer, the backend's replies) meanwhile.
"""

import json
import os
import sys
import time
import traceback

from krita import Extension, Krita, Selection
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QPushButton

OUT = os.environ.get("LD_E2E_OUT", "")
report = {"steps": []}


def write_report() -> None:
    tmp = os.path.join(OUT, "report.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=1)
    os.replace(tmp, os.path.join(OUT, "report.json"))


def die(exc_type, exc, tb) -> None:
    report["error"] = "".join(traceback.format_exception(exc_type, exc, tb))
    write_report()
    os._exit(3)  # Krita's own hook would open a modal dialog and hang a headless run


def quit_krita() -> None:
    for doc in Krita.instance().documents():
        doc.setModified(False)
    Krita.instance().action("file_quit").trigger()


def docker():
    found = [d for d in Krita.instance().dockers() if d.objectName() == "layeringdiff_docker"]
    return found[0] if found else None


def load_raw(name):
    with open(os.path.join(OUT, name), "rb") as fh:
        return fh.read()


def dump(name, data) -> None:
    with open(os.path.join(OUT, name), "wb") as fh:
        fh.write(bytes(data))


def tree(node):
    return [{"name": n.name(), "type": n.type(), "visible": n.visible(),
             "children": tree(n) if n.type() == "grouplayer" else []} for n in node.childNodes()]


def find(node, name):
    for n in node.childNodes():
        if n.name() == name:
            return n
        if n.type() == "grouplayer":
            hit = find(n, name)
            if hit is not None:
                return hit
    return None


def new_document(w, h, pixels_file, depth="U8"):
    k = Krita.instance()
    doc = k.createDocument(w, h, "e2e", "RGBA", depth, "", 72.0)
    k.activeWindow().addView(doc)
    layer = doc.rootNode().childNodes()[0]
    layer.setName("photo")
    layer.setPixelData(load_raw(pixels_file), 0, 0, w, h)
    doc.setActiveNode(layer)
    doc.refreshProjection()
    return doc, layer


def select(doc, w, h, mask_file):
    sel = Selection()
    sel.resize(w, h)
    sel.setPixelData(load_raw(mask_file), 0, 0, w, h)
    doc.setSelection(sel)


def idle(d):
    return d.controller.job is None


def connected(d):
    return d.controller.client is not None and d.controller.client.connected


def job_done(d, doc, what, timeout=120):
    """Wait until the docker's job is over, then let the document settle (use with `yield from`)."""
    yield (lambda: idle(d), timeout, what)
    doc.waitForDone()
    doc.refreshProjection()


def step(name, **info):
    report["steps"].append({"step": name, "time": time.time(), **info})
    write_report()


def scenario_split_peel():
    spec = json.loads(load_raw("spec.json"))
    w, h = spec["w"], spec["h"]
    d = docker()
    yield (lambda: connected(d), 90, "backend connected")
    step("connected", status=d.status.text())
    doc, layer = new_document(w, h, "photo.bgra")
    d.split_button.click()
    step("split without selection", message=d.message.text())
    select(doc, w, h, "mask1.u8")
    d.phrase.setText("cat")
    d.split_button.click()
    yield from job_done(d, doc, "split finished")
    step("split done", message=d.message.text(), tree=tree(doc.rootNode()))
    fg, bg = find(doc.rootNode(), "cat foreground"), find(doc.rootNode(), "cat background")
    dump("split_fg.bgra", fg.pixelData(0, 0, w, h))
    dump("split_bg.bgra", bg.pixelData(0, 0, w, h))
    dump("source_after.bgra", layer.pixelData(0, 0, w, h))
    dump("projection_split.bgra", doc.pixelData(0, 0, w, h))
    d.grab().save(os.path.join(OUT, "docker_after_split.png"))
    Krita.instance().activeWindow().qwindow().grab().save(os.path.join(OUT, "krita_after_split.png"))
    yield (lambda: doc.activeNode().name() == "cat background", 5, "background active after the split")
    report["active_after_split"] = doc.activeNode().name()
    # peel: a second object, selected on the background the split left active
    select(doc, w, h, "mask2.u8")
    d.phrase.setText("ball")
    d.peel_button.click()
    yield from job_done(d, doc, "peel finished")
    step("peel done", message=d.message.text(), tree=tree(doc.rootNode()))
    dump("peel_fg.bgra", find(doc.rootNode(), "ball foreground 2").pixelData(0, 0, w, h))
    dump("peel_bg.bgra", find(doc.rootNode(), "ball background").pixelData(0, 0, w, h))
    dump("projection_peel.bgra", doc.pixelData(0, 0, w, h))
    # another document becomes active while a job runs: the result still goes to the first one
    select(doc, w, h, "mask1.u8")
    d.phrase.setText("again")
    d.split_button.click()
    other = Krita.instance().createDocument(64, 64, "other", "RGBA", "U8", "", 72.0)
    Krita.instance().activeWindow().addView(other)
    yield (lambda: idle(d), 120, "split while another document is active")
    step("split other active", message=d.message.text(), tree=tree(doc.rootNode()), other_tree=tree(other.rootNode()),
         active_doc_is_other=Krita.instance().activeDocument() == other)
    other.setModified(False)
    other.close()
    Krita.instance().setActiveDocument(doc)
    yield (lambda: Krita.instance().activeDocument() == doc, 10, "first document active again")
    # generate: the model stack is not built, the backend says so and nothing changes
    before = json.dumps(tree(doc.rootNode()))
    d.prompt.setPlainText("[a red fox] in a snowy forest")
    d.generate_button.click()
    yield (lambda: idle(d), 60, "generate answered")
    step("generate", message=d.message.text(), unchanged=json.dumps(tree(doc.rootNode())) == before)


def scenario_cancel_kill():
    spec = json.loads(load_raw("spec.json"))
    w, h = spec["w"], spec["h"]
    d = docker()
    yield (lambda: connected(d), 90, "backend connected")
    doc, layer = new_document(w, h, "photo.bgra")
    select(doc, w, h, "mask1.u8")
    before = json.dumps(tree(doc.rootNode()))
    d.split_button.click()
    yield (lambda: d.controller.job is not None and d.controller.job.stage in ("matting", "foreground"), 60,
           "job running")
    d.cancel_button.click()
    yield (lambda: idle(d), 60, "cancelled")
    step("cancel", message=d.message.text(), unchanged=json.dumps(tree(doc.rootNode())) == before)
    dump("cancel_source.bgra", layer.pixelData(0, 0, w, h))
    # backend killed in the middle of a job
    d.split_button.click()
    yield (lambda: d.controller.job is not None and d.controller.job.stage in ("matting", "foreground"), 60,
           "second job running")
    pid = d.controller.process.proc.pid
    os.kill(pid, 9)
    step("killed backend", pid=pid)
    yield (lambda: idle(d), 30, "job failed")
    step("after kill", message=d.message.text(), status=d.status.text(),
         restart_visible=d.restart_button.isVisible(), unchanged=json.dumps(tree(doc.rootNode())) == before)
    d.restart_button.click()
    yield (lambda: connected(d), 90, "reconnected after restart")
    step("restarted", status=d.status.text())


def scenario_depths():
    spec = json.loads(load_raw("spec.json"))
    w, h = spec["w"], spec["h"]
    d = docker()
    yield (lambda: connected(d), 90, "backend connected")
    for depth in spec["depths"]:
        doc, layer = new_document(w, h, f"photo_{depth}.raw", depth)
        select(doc, w, h, "mask1.u8")
        d.split_button.click()
        yield from job_done(d, doc, f"{depth} split finished")
        step(f"split {depth}", message=d.message.text(), tree=tree(doc.rootNode()))
        dump(f"projection_{depth}.raw", doc.pixelData(0, 0, w, h))
        dump(f"fg_{depth}.raw", find(doc.rootNode(), "photo foreground").pixelData(0, 0, w, h))


def scenario_models():
    """Generate layered into a new document, then split a photo layer by phrase (tiny models)."""
    spec = json.loads(load_raw("spec.json"))
    d = docker()
    yield (lambda: connected(d), 90, "backend connected")
    step("capabilities", models=d.controller.client.capabilities.models)
    d.prompt.setPlainText("[a red fox] in the snow")
    d.width_box.setValue(spec["gen_w"])
    d.height_box.setValue(spec["gen_h"])
    d.steps.setValue(3)
    d.seed.setValue(5)
    d.generate_button.click()
    yield (lambda: idle(d), 180, "generate finished")
    doc = Krita.instance().activeDocument()
    step("generate", message=d.message.text(), tree=tree(doc.rootNode()), size=[doc.width(), doc.height()])
    fg = find(doc.rootNode(), "a red fox foreground")
    b = fg.bounds()
    report["generated_fg_bounds"] = [b.x(), b.y(), b.width(), b.height()]
    dump("generated_fg.bgra", fg.pixelData(0, 0, spec["gen_w"], spec["gen_h"]))
    w, h = spec["w"], spec["h"]
    doc2, layer = new_document(w, h, "photo.bgra")
    d.phrase.setText("a cat")
    d.split_button.click()
    yield from job_done(d, doc2, "split by phrase finished", 180)
    step("split by phrase", message=d.message.text(), tree=tree(doc2.rootNode()))
    dump("phrase_projection.bgra", doc2.pixelData(0, 0, w, h))
    # guided: the active layer (the background the split left) as a canny guide, at the canvas's size
    d.findChild(QPushButton, "ld_canvas_size").click()
    d.guide.setCurrentIndex(d.guide.findData("canny"))
    d.guide_strength.setValue(0.8)
    d.prompt.setPlainText("[a bird] over the water")
    d.generate_button.click()
    yield (lambda: idle(d), 180, "guided generate finished")
    step("guided generate", message=d.message.text(), tree=tree(doc2.rootNode()),
         size=[d.width_box.value(), d.height_box.value()], strength_enabled=d.guide_strength.isEnabled())


def scenario_remote():
    """A backend elsewhere that requires keys: refused without them, keys typed into Settings, then a split."""
    spec = json.loads(load_raw("spec.json"))
    w, h = spec["w"], spec["h"]
    d = docker()
    yield (lambda: d.controller.client is not None and d.controller.client.state == "refused", 60, "refusal")
    step("refused", status=d.status.text(), restart_shown=not d.restart_button.isHidden())
    d.settings_box.setChecked(True)
    d.server_key.setText(spec["server_key"])
    d.client_key.setText(spec["client_key"])
    d.findChild(QPushButton, "ld_apply").click()
    yield (lambda: connected(d), 60, "connected with keys")
    step("connected", status=d.status.text())
    doc, layer = new_document(w, h, "photo.bgra")
    select(doc, w, h, "mask1.u8")
    d.split_button.click()
    yield from job_done(d, doc, "split finished")
    step("split", message=d.message.text(), tree=tree(doc.rootNode()))
    dump("projection.bgra", doc.pixelData(0, 0, w, h))


def scenario_timed_split():
    """Timed splits (benchmarks/bench_krita.py), each in a new document (left open: closing one crashed Krita 5.1.5
    under Xvfb): click to layers, the time of every stage the docker shows, the backend's peak memory (VmHWM)."""
    spec = json.loads(load_raw("spec.json"))
    w, h = spec["w"], spec["h"]
    d = docker()
    yield (lambda: connected(d), 120, "backend connected")
    marks = []
    shown = d.controller.view.set_progress

    def set_progress(stage, fraction):
        if not marks or marks[-1][0] != stage:
            marks.append((stage, time.perf_counter()))
        shown(stage, fraction)

    d.controller.view.set_progress = set_progress
    for run in range(spec.get("runs", 1)):
        doc, layer = new_document(w, h, "photo.bgra")
        select(doc, w, h, "mask1.u8")
        doc.waitForDone()
        marks.clear()
        start = time.perf_counter()
        d.split_button.click()  # reads the layer and the selection, sends the job
        sent = time.perf_counter()
        yield from job_done(d, doc, f"timed split {run} finished", 600)
        end = time.perf_counter()
        with open(f"/proc/{d.controller.process.proc.pid}/status") as fh:
            hwm = next((int(line.split()[1]) // 1024 for line in fh if line.startswith("VmHWM:")), -1)
        step(f"timed split {run}", message=d.message.text(), click_to_layers=round(end - start, 3),
             read_and_send=round(sent - start, 3), backend_peak_mb=hwm, tree=tree(doc.rootNode()),
             stages=[(name, round(t - start, 3)) for name, t in marks if name])


SCENARIOS = {"models": scenario_models, "depths": scenario_depths, "split_peel": scenario_split_peel,
             "cancel_kill": scenario_cancel_kill, "remote": scenario_remote, "timed_split": scenario_timed_split}


class Driver(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.gen = None
        self.waiting = None
        self.timer = None

    def setup(self):
        sys.excepthook = die
        Krita.instance().notifier().windowCreated.connect(self.start)

    def createActions(self, window):
        pass

    def start(self):
        QTimer.singleShot(300, self.begin)

    def begin(self):
        try:
            self.gen = SCENARIOS[os.environ["LD_E2E_SCENARIO"]]()
            self.timer = QTimer()
            self.timer.timeout.connect(self.pump)
            self.timer.start(100)
            self.advance()
        except Exception:
            die(*sys.exc_info())

    def advance(self):
        try:
            cond, timeout, what = next(self.gen)
            self.waiting = (cond, time.time() + timeout, what)
        except StopIteration:
            self.timer.stop()
            report["done"] = True
            write_report()
            quit_krita()

    def pump(self):
        if self.waiting is None:
            return
        cond, deadline, what = self.waiting
        try:
            ok = cond()
        except Exception:
            die(*sys.exc_info())
            return
        if ok:
            self.waiting = None
            self.advance()
        elif time.time() > deadline:
            self.timer.stop()
            d = docker()
            report["error"] = f"timed out waiting for: {what}"
            report["docker_message"] = d.message.text() if d else None
            report["docker_status"] = d.status.text() if d else None
            write_report()
            quit_krita()


Krita.instance().addExtension(Driver(Krita.instance()))
