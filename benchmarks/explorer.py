"""The explorer in headless Chromium: time to a usable page and decode time per slider move
(median over 40 moves, measured in the browser from request to drawn picture); saves a screenshot.

    python benchmarks/explorer.py --model mnist-mlp --data mnist --data-dir ../shared/data/mnist \
        --screenshot docs/images/explorer.png
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import vaekit
from vaekit.data import load_dataset
from vaekit.explorer import ModelView, serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist-mlp")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--moves", type=int, default=40)
    parser.add_argument("--screenshot")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    start = time.perf_counter()
    data = load_dataset(args.data, split="test", data_dir=args.data_dir, limit=1000)
    server = serve(ModelView(vaekit.load(args.model), data.x, data.y, name=args.model))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{server.server_port}/")
        while not driver.execute_script("return Boolean(window.vaekit && window.vaekit.ready && window.vaekit.timings.length)"):
            time.sleep(0.02)
        ready = time.perf_counter() - start
        for k in range(args.moves):
            driver.execute_script("const s = document.getElementById('slider-' + (arguments[0] % 3));"
                                  "s.value = s.min * 1 + (s.max - s.min) * arguments[1]; s.dispatchEvent(new Event('input'));",
                                  k, (k % 11) / 10)
            while driver.execute_script("return window.vaekit.timings.length") < k + 2:
                time.sleep(0.005)
        timings = driver.execute_script("return window.vaekit.timings.slice(1);")
        canvas = driver.find_element(By.ID, "map")
        ActionChains(driver).move_to_element_with_offset(canvas, -120, -40).click().perform()
        ActionChains(driver).move_to_element_with_offset(canvas, 110, 90).click().perform()
        draw = driver.find_element(By.ID, "draw")
        chain = ActionChains(driver).move_to_element_with_offset(draw, 10, -100).click_and_hold()
        for _ in range(20):
            chain = chain.move_by_offset(0, 10)
        chain.release().perform()
        driver.find_element(By.ID, "encode").click()
        time.sleep(1.0)
        if args.screenshot:
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.screenshot)
    finally:
        driver.quit()
        server.shutdown()
    print(f"{args.model}: usable page {ready:.2f} s after start (model and data loaded, page drawn)")
    print(f"decode per slider move, in the browser: median {statistics.median(timings):.1f} ms, "
          f"90th percentile {sorted(timings)[int(0.9 * len(timings))]:.1f} ms over {len(timings)} moves")


if __name__ == "__main__":
    sys.exit(main())
