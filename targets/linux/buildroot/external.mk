include $(sort $(wildcard $(BR2_EXTERNAL_OTALITE_PATH)/otalite/*.mk))
