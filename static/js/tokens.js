// The token pages: copy a new key with one click, and ask before revoking a token.

const key = document.getElementById("new-key");
const copy = document.getElementById("copy-key");
if (key && copy) {
  copy.hidden = false;
  copy.addEventListener("click", async () => {
    const said = document.getElementById("copy-result");
    try {
      await navigator.clipboard.writeText(key.value);
    } catch {
      // No clipboard API (a page not served over HTTPS): select it, and let the browser copy.
      key.select();
      if (!document.execCommand("copy")) {
        said.textContent = "Selected: press Ctrl+C (⌘+C) to copy it.";
        return;
      }
    }
    said.textContent = "Copied to the clipboard.";
  });
}

// Forms with data-confirm ask first, in a dialog of the page (not window.confirm): "Revoke" goes on,
// "Keep it" (or Esc) does nothing.
const dialog = document.getElementById("confirm-dialog");
if (dialog) {
  let pending = null;
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.confirmed === "yes") return;
      event.preventDefault();
      pending = form;
      dialog.querySelector(".confirm-text").textContent = form.dataset.confirm;
      dialog.showModal();
    });
  }
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "yes" && pending) {
      pending.dataset.confirmed = "yes";
      pending.requestSubmit();
    }
    pending = null;
  });
}
