public enum DemiWirePlaceholder {}
