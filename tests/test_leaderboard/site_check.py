"""Checks of a rendered site shared by the site tests: every link and source resolves, nothing is
fetched from the network."""
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Set, Tuple
from urllib.parse import unquote, urlsplit


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: List[Tuple[str, str, str]] = []     # (tag, attribute, value)
        self.ids: Set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == 'id' and value:
                self.ids.add(value)
            if name in ('href', 'src') and value is not None:
                self.links.append((tag, name, value))


def parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding='utf-8'))
    return parser


def broken_links(site: Path) -> List[str]:
    """Every ``href``/``src`` of every page that does not resolve to a file (and, with a
    ``#fragment``, to an element with that id), or that points off the machine."""
    pages = sorted(site.rglob('*.html'))
    parsed: Dict[Path, _Links] = {p.resolve(): parse(p) for p in pages}
    problems = []
    for page in pages:
        for tag, attr, value in parsed[page.resolve()].links:
            url = urlsplit(value)
            if url.scheme or url.netloc or value.startswith('//'):
                problems.append(f'{page.relative_to(site)}: {tag} {attr}={value!r} leaves the site')
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page.resolve()
            if not target.is_file():
                problems.append(f'{page.relative_to(site)}: {attr}={value!r}: no file {target}')
                continue
            if url.fragment and target.suffix == '.html':
                ids = parsed[target].ids if target in parsed else parse(target).ids
                if unquote(url.fragment) not in ids:
                    problems.append(f'{page.relative_to(site)}: {attr}={value!r}: no id {url.fragment!r}')
    return problems


def no_network(site: Path) -> List[str]:
    """Pages, style sheet and script never name an http(s) resource to load."""
    problems = []
    for path in list(site.rglob('*.html')) + list(site.rglob('*.css')) + list(site.rglob('*.js')):
        text = path.read_text(encoding='utf-8')
        for m in re.finditer(r'(?:src|href)\s*=\s*["\']?(https?:)?//', text):
            problems.append(f'{path.relative_to(site)}: {m.group(0)}')
        for m in re.finditer(r'url\(\s*["\']?https?:', text):
            problems.append(f'{path.relative_to(site)}: {m.group(0)}')
        if re.search(r'\bfetch\(|XMLHttpRequest|import\(', text):
            problems.append(f'{path.relative_to(site)}: loads something at run time')
    return problems
