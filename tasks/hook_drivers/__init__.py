"""Hook drivers that ship with storeflow."""
