"""The docs site: built offline from the notebooks, opened in headless Chromium."""
import pathlib, shutil, pytest
from harlib.docs import build_site, broken_links, browser_check

ROOT = pathlib.Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    return build_site(ROOT, out=str(tmp_path_factory.mktemp('site')))

def test_site_has_every_library_page_and_no_broken_links(site):
    names = {p.name for p in site.rglob('*.html')}
    assert {'index.html', 'imu.html', 'cli.html', 'docs.html'} <= names
    assert broken_links(site) == []

BROWSER = any(shutil.which(n) for n in ('chromium', 'chromium-browser', 'google-chrome', 'chrome'))

@pytest.mark.skipif(not BROWSER, reason='no Chromium on this machine: `make browser` installs it (Debian, as root)')
def test_pages_render_in_a_browser(site):
    analysis = sorted(p.relative_to(site).as_posix() for p in (site / 'analysis').glob('*.html'))
    assert analysis, 'no analysis pages: runs/reference/quickstart/notebooks/ should hold the executed analysis notebooks'
    res = browser_check(site, ['index.html', 'imu.html', analysis[0]])
    for page, r in res.items():
        assert r['title'].endswith('- harlib') and r['text'] > 200, (page, r)
        assert r['broken_images'] == [] and r['external_requests'] == [] and r['js_errors'] == [], (page, r)
    assert res[analysis[0]]['n_images'] >= 1, 'the analysis page shows no figure'
    assert 'show_doc' not in (site / 'imu.html').read_text() and 'to_canonical' in (site / 'imu.html').read_text()
