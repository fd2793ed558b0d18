"""The package's shape: the layers in pyproject.toml hold, no import cycles, small modules, family facts in families/."""

import ast
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "workbench"
MAX_LINES = 400


def test_the_import_contracts_hold():
    """pyproject.toml's [tool.importlinter] contracts: the layers, and no torch in the data layer."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def import_cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), counting imports inside functions."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_back():
    graph = grimp.build_graph("workbench", cache_dir=None)
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: a two-module package that imports in a circle is caught."""
    package = tmp_path / "circle"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from . import b\n")
    (package / "b.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles(grimp.build_graph("circle", cache_dir=None)) == [["circle.a", "circle.b"]]


def test_every_module_reads_in_one_sitting():
    lengths = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_checking_a_spec_imports_no_torch():
    code = ("import sys; from workbench.spec import spec_from_dict; "
            "spec_from_dict({'model': 'sdxl', 'resolution': 1024, 'prompt': 'a cat'}); "
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def family_words() -> set[str]:
    """Strings only a family module may hold: preset names (but the default model's), hub ids, SDXL-only names."""
    from workbench.families import DEFAULT_MODEL, FAMILIES, sdxl
    words = {sdxl.PIPELINE_CLASS, "StableDiffusionXLPipeline", "text_encoder_2", "add_time_ids", "tokenizer_2"}
    for family in FAMILIES:
        words |= set(family.PRESETS) | set(family.RENAMED_IDS) | set(family.RENAMED_IDS.values())
        words |= {name for pair in family.PRESETS.values() for name in pair}
        words |= {name for name in family.TRAINED_SIZES}
    return words - {DEFAULT_MODEL}  # the embedded toy is every spec's default, and has its own package


def string_constants(source: str) -> set[str]:
    """Every string constant of a module but its docstrings."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


def test_only_the_family_modules_name_presets_hub_ids_and_sdxl_parts():
    """The design's check: the sweep, LoRA, metrics and widgets never branch on a family's names."""
    words = family_words()
    assert {"sd15", "sdxl", "tiny-sdxl", "text_encoder_2", "stabilityai/stable-diffusion-xl-base-1.0"} <= words
    leaks = {}
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "families":
            continue
        found = string_constants(path.read_text()) & words
        if found:
            leaks[str(path.relative_to(ROOT))] = sorted(found)
    assert leaks == {}


def test_the_leak_check_sees_through_fstrings_and_not_docstrings():
    source = 'def f():\n    """the sdxl preset"""\n    return f"{x} sdxl" + "tiny-sdxl"\n'
    assert string_constants(source) & family_words() == {"tiny-sdxl"}


PART_ATTRIBUTES = {"unet"}  # a pipeline's denoiser, named by its family (DENOISER), asked as families.denoiser(pipe)
PART_CLASSES = {"UNet2DConditionModel", "ControlNetModel"}  # a family's denoiser_class() and controlnet_class()
# how a UNet takes its ControlNets' residuals: a family's control_residuals() and predict_noise()
PART_KEYWORDS = {"down_block_additional_residuals", "mid_block_additional_residual"}


def family_parts_named(source: str) -> set[str]:
    """The family-specific parts a module's code names: `.unet`, the UNet and ControlNet classes (as a name, an
    attribute or an import) and the UNet's residual keywords; strings and docstrings don't count, nor a local
    variable called `unet`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in PART_ATTRIBUTES | PART_CLASSES:
            found.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in PART_CLASSES:
            found.add(node.id)
        elif isinstance(node, ast.alias) and node.name.rpartition(".")[2] in PART_CLASSES:
            found.add(node.name.rpartition(".")[2])
        elif isinstance(node, ast.keyword) and node.arg in PART_KEYWORDS:
            found.add(node.arg)
    return found


def test_only_the_family_modules_name_the_denoiser_and_the_controlnet_class():
    """A family whose denoiser is a transformer (SD3, Flux) is one module: nothing else says `.unet` or hands a UNet
    its ControlNets' down and middle residuals."""
    named = {str(path.relative_to(ROOT)): sorted(found) for path in PACKAGE.rglob("*.py")
             if path.parent.name != "families" and (found := family_parts_named(path.read_text()))}
    assert named == {}


def test_the_parts_check_sees_attributes_names_and_imports_but_not_words():
    source = ('"""the unet and ControlNetModel"""\nfrom diffusers import ControlNetModel\nunet = pipe.unet\n'
              'x = diffusers.UNet2DConditionModel\ny = "UNet2DConditionModel"\n'
              'z = net(x, mid_block_additional_residual=m)\n')
    assert family_parts_named(source) == {"unet", "ControlNetModel", "UNet2DConditionModel",
                                          "mid_block_additional_residual"}
    assert family_parts_named("unet = denoiser(pipe)\n") == set()


def contract_drawing() -> str:
    """The layers contract of pyproject.toml as the README draws it: each layer's comment, then its packages and their
    modules (a package's modules by file name, top down), so the drawing cannot drift from what lint-imports checks."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("layers = [") + len("layers = ["):]
    block = block[:block.index("\n]")]
    lines, comment = [], ""
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("#"):
            comment = line.lstrip("# ")
        elif line.startswith('"'):
            lines.append(f"# {comment}")
            for name in line.strip('",').split(" : "):
                path = PACKAGE.joinpath(*name.split(".")[1:])
                if path.is_dir():
                    modules = sorted(p.stem for p in path.glob("*.py") if p.stem != "__init__")
                    lines.append(f"{name.removeprefix('workbench.')}/".ljust(14) + ", ".join(modules))
                else:
                    lines.append(name.removeprefix("workbench."))
    return "\n".join(lines)


def test_the_readme_drawing_is_the_contract():
    readme = (ROOT / "README.md").read_text()
    drawn = readme[readme.index("<!-- layers:start -->"):readme.index("<!-- layers:end -->")]
    assert f"```\n{contract_drawing()}\n```" in drawn, "README's drawing is stale; paste:\n" + contract_drawing()
